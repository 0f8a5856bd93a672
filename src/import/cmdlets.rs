//! The objects of the five cmdlets as `ConvertTo-Json` writes them, and reading a file of
//! them.
//!
//! The shapes follow Microsoft's cmdlet references and the outputs they show; what
//! varies between versions of the MicrosoftTeams module is tolerated:
//! - one object gives a JSON object, several give an array, none gives an empty file;
//!   Windows PowerShell 5.1 may wrap an array as `{"value": [...], "Count": n}`;
//! - property names are case-insensitive in PowerShell and the module has spelt some of
//!   them differently (`LineURI`, `LineUri`), so keys are matched ignoring ASCII case;
//! - a user's `OnlineVoiceRoutingPolicy` is a name in old modules and
//!   `{"Authority": "Tenant", "Name": "..."}` since version 4.
//!
//! Properties drhub does not read are ignored, and so are unknown ones.

use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};

/// One `Get-CsOnlinePSTNGateway` object (`New-CsOnlinePSTNGateway`'s parameters).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(super) struct Gateway {
    pub identity: Option<String>,
    pub fqdn: Option<String>,
    /// Microsoft's older articles spell it with two l's.
    #[serde(alias = "SipSignallingPort")]
    pub sip_signaling_port: Option<i64>,
    pub enabled: Option<bool>,
    pub send_sip_options: Option<bool>,
    pub media_bypass: Option<bool>,
    pub forward_call_history: Option<bool>,
    pub forward_pai: Option<bool>,
    pub max_concurrent_sessions: Option<i64>,
    #[serde(deserialize_with = "response_codes")]
    pub failover_response_codes: Option<Vec<String>>,
    pub failover_time_seconds: Option<i64>,
    pub description: Option<String>,
    // The settings drhub has no equivalent for, read only to say that they were set.
    pub bypass_mode: Option<Value>,
    pub codec_priority: Option<Value>,
    pub excluded_codecs: Option<Value>,
    pub gateway_site_id: Option<Value>,
    pub gateway_site_lbr_enabled: Option<Value>,
    pub gateway_lbr_enabled_user_override: Option<Value>,
    #[serde(rename = "IPAddressVersion")]
    pub ip_address_version: Option<Value>,
    pub inbound_teams_number_translation_rules: Option<Value>,
    pub inbound_pstn_number_translation_rules: Option<Value>,
    pub outbound_teams_number_translation_rules: Option<Value>,
    pub outbound_pstn_number_translation_rules: Option<Value>,
    pub media_relay_routing_location_override: Option<Value>,
    pub pidf_lo_supported: Option<Value>,
    pub proxy_sbc: Option<Value>,
}

impl Gateway {
    /// The settings drhub cannot mirror that this gateway has away from their default,
    /// each with what it is for.
    pub fn unmapped(&self) -> Vec<(&'static str, &Value, &'static str)> {
        let fields = [
            (
                "BypassMode",
                &self.bypass_mode,
                "None",
                "media bypass between network sites",
            ),
            (
                "CodecPriority",
                &self.codec_priority,
                "SILKWB,SILKNB,PCMU,PCMA",
                "codec order; drhub's media processor answers with its own",
            ),
            (
                "ExcludedCodecs",
                &self.excluded_codecs,
                "",
                "codecs; drhub's media processor answers with its own",
            ),
            (
                "GatewaySiteId",
                &self.gateway_site_id,
                "",
                "Location-Based Routing",
            ),
            (
                "GatewaySiteLbrEnabled",
                &self.gateway_site_lbr_enabled,
                "",
                "Location-Based Routing",
            ),
            (
                "GatewayLbrEnabledUserOverride",
                &self.gateway_lbr_enabled_user_override,
                "",
                "Location-Based Routing",
            ),
            (
                "IPAddressVersion",
                &self.ip_address_version,
                "IPv4",
                "IPv6 signalling and media",
            ),
            (
                "InboundTeamsNumberTranslationRules",
                &self.inbound_teams_number_translation_rules,
                "",
                "number translation rules",
            ),
            (
                "InboundPstnNumberTranslationRules",
                &self.inbound_pstn_number_translation_rules,
                "",
                "number translation rules",
            ),
            (
                "OutboundTeamsNumberTranslationRules",
                &self.outbound_teams_number_translation_rules,
                "",
                "number translation rules",
            ),
            (
                "OutboundPstnNumberTranslationRules",
                &self.outbound_pstn_number_translation_rules,
                "",
                "number translation rules",
            ),
            (
                "MediaRelayRoutingLocationOverride",
                &self.media_relay_routing_location_override,
                "",
                "media relay location",
            ),
            (
                "PidfLoSupported",
                &self.pidf_lo_supported,
                "",
                "PIDF-LO location bodies",
            ),
            ("ProxySbc", &self.proxy_sbc, "", "Local Media Optimization"),
        ];
        fields
            .into_iter()
            .filter_map(|(name, value, default, what)| {
                let value = value.as_ref()?;
                is_set(value, default).then_some((name, value, what))
            })
            .collect()
    }
}

/// Whether a setting is away from its default: not null, false, empty or `default`.
fn is_set(value: &Value, default: &str) -> bool {
    match value {
        Value::Null | Value::Bool(false) => false,
        Value::String(s) => !s.is_empty() && s != default,
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        _ => true,
    }
}

/// One `Get-CsOnlineVoiceRoute` object.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(super) struct VoiceRoute {
    pub identity: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub number_pattern: Option<String>,
    pub priority: Option<i64>,
    #[serde(deserialize_with = "ps_list")]
    pub online_pstn_gateway_list: Vec<String>,
    #[serde(deserialize_with = "ps_list")]
    pub online_pstn_usages: Vec<String>,
    /// Set on Operator Connect Conferencing routes, which have no gateways.
    pub bridge_source_phone_number: Option<String>,
}

/// The one `Get-CsOnlinePstnUsage` object: `{"Identity": "Global", "Usage": [...]}`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(super) struct PstnUsages {
    pub identity: Option<String>,
    #[serde(deserialize_with = "ps_list")]
    pub usage: Vec<String>,
}

/// One `Get-CsOnlineVoiceRoutingPolicy` object; `Identity` is `Global` or `Tag:<name>`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(super) struct VoiceRoutingPolicy {
    pub identity: Option<String>,
    pub description: Option<String>,
    #[serde(deserialize_with = "ps_list")]
    pub online_pstn_usages: Vec<String>,
}

/// One `Get-CsOnlineUser` object, the few of its many properties drhub reads.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(super) struct User {
    pub user_principal_name: Option<String>,
    /// `sip:alice@contoso.com`.
    pub sip_address: Option<String>,
    pub display_name: Option<String>,
    /// `tel:+14255550100`, maybe with `;ext=`.
    #[serde(rename = "LineURI")]
    pub line_uri: Option<String>,
    pub enterprise_voice_enabled: Option<bool>,
    #[serde(deserialize_with = "policy_name")]
    pub online_voice_routing_policy: Option<String>,
}

/// The objects of one cmdlet's `ConvertTo-Json` output; an error names the object
/// (`[2]`, counting a lone object as `[0]`) and the property (`.SipSignalingPort`) that
/// is wrong.
pub(super) fn read_objects<T: DeserializeOwned>(text: &str) -> Result<Vec<T>, String> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let root: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let items = match root {
        Value::Null => Vec::new(),
        Value::Array(items) => items,
        Value::Object(mut map) => {
            array_wrapper(&mut map).unwrap_or_else(|| vec![Value::Object(map)])
        }
        other => {
            return Err(format!(
                "expected ConvertTo-Json output (an object or an array of objects), found {}",
                kind(&other)
            ))
        }
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            if !item.is_object() {
                return Err(format!("[{i}]: expected an object, found {}", kind(&item)));
            }
            serde_path_to_error::deserialize(CaseInsensitive(item)).map_err(|e| {
                let path = e.path().to_string();
                let sep = if path.starts_with('[') { "" } else { "." };
                format!("[{i}]{sep}{path}: {}", e.inner())
            })
        })
        .collect()
}

/// Windows PowerShell 5.1 writes some arrays as `{"value": [...], "Count": n}`.
fn array_wrapper(map: &mut Map<String, Value>) -> Option<Vec<Value>> {
    let keys_fit = map.len() == 2
        && map.keys().any(|k| k.eq_ignore_ascii_case("value"))
        && map.keys().any(|k| k.eq_ignore_ascii_case("count"));
    if !keys_fit {
        return None;
    }
    let key = map
        .keys()
        .find(|k| k.eq_ignore_ascii_case("value"))?
        .clone();
    match map.remove(&key) {
        Some(Value::Array(items)) => Some(items),
        Some(other) => {
            map.insert(key, other);
            None
        }
        None => None,
    }
}

/// How a JSON value is named in messages.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A list property: an array of strings, `null` or absent for none, or the 5.1 wrapper.
/// A string in its place is what `ConvertTo-Json` writes for a list deeper than its
/// `-Depth`, so it is refused with that hint rather than taken as one name.
fn ps_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let items = match Value::deserialize(d)? {
        Value::Null => return Ok(Vec::new()),
        Value::Array(items) => items,
        Value::Object(mut map) => array_wrapper(&mut map)
            .ok_or_else(|| de::Error::custom("expected a list of names, found an object"))?,
        Value::String(s) => {
            return Err(de::Error::custom(format!(
                "expected a list of names, found the string {s:?}: run ConvertTo-Json with -Depth 5"
            )))
        }
        other => {
            return Err(de::Error::custom(format!(
                "expected a list of names, found {}",
                kind(&other)
            )))
        }
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::String(s) => Ok(s),
            other => Err(de::Error::custom(format!(
                "item {i} is {}, expected a name",
                kind(&other)
            ))),
        })
        .collect()
}

/// `FailoverResponseCodes`: a string such as `"408, 503, 504"` (its type in the cmdlet),
/// or a list. `None` when not set.
fn response_codes<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    let codes: Vec<String> = match Value::deserialize(d)? {
        Value::Null => return Ok(None),
        Value::String(s) => s
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect(),
        Value::Array(items) => items
            .into_iter()
            .map(|item| match item {
                Value::String(s) => Ok(s),
                Value::Number(n) => Ok(n.to_string()),
                other => Err(de::Error::custom(format!(
                    "expected SIP status codes, found {} in the list",
                    kind(&other)
                ))),
            })
            .collect::<Result<_, _>>()?,
        other => {
            return Err(de::Error::custom(format!(
                "expected SIP status codes such as \"408,503,504\", found {}",
                kind(&other)
            )))
        }
    };
    Ok((!codes.is_empty()).then_some(codes))
}

/// A user's policy: a name, or `{"Authority": ..., "Name": ...}`; `None` for none.
fn policy_name<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let name = match Value::deserialize(d)? {
        Value::Null => None,
        Value::String(s) => Some(s),
        Value::Object(map) => match map.iter().find(|(k, _)| k.eq_ignore_ascii_case("name")) {
            Some((_, Value::String(s))) => Some(s.clone()),
            Some((_, Value::Null)) => None,
            _ => {
                return Err(de::Error::custom(
                    "expected a policy name or {\"Authority\": ..., \"Name\": ...}",
                ))
            }
        },
        other => {
            return Err(de::Error::custom(format!(
                "expected a policy name, found {}",
                kind(&other)
            )))
        }
    };
    Ok(name.filter(|n| !n.trim().is_empty()))
}

/// A JSON object whose keys are matched to a struct's fields ignoring ASCII case, as
/// PowerShell matches property names. Only the object itself is affected; what its
/// fields hold is read as it is.
struct CaseInsensitive(Value);

impl<'de> Deserializer<'de> for CaseInsensitive {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        self.0.deserialize_any(visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        let value = match self.0 {
            Value::Object(map) => Value::Object(
                map.into_iter()
                    .map(|(key, v)| (canonical_key(key, fields), v))
                    .collect(),
            ),
            other => other,
        };
        value.deserialize_struct(name, fields, visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
        byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
        identifier ignored_any
    }
}

/// `key` as `fields` spells it when it is one of them but for ASCII case.
fn canonical_key(key: String, fields: &[&str]) -> String {
    if fields.contains(&key.as_str()) {
        return key;
    }
    match fields.iter().find(|f| f.eq_ignore_ascii_case(&key)) {
        Some(f) => (*f).to_owned(),
        None => key,
    }
}

/// The text of an input file. `>` in Windows PowerShell 5.1 writes UTF-16 with a byte
/// order mark and `Out-File -Encoding utf8` UTF-8 with one; PowerShell 7 writes UTF-8.
pub fn decode(bytes: &[u8]) -> Result<String, String> {
    let utf16 = |chunks: std::slice::ChunksExact<'_, u8>, be: bool| {
        let units: Vec<u16> = chunks
            .map(|c| {
                let pair = [c[0], c[1]];
                if be {
                    u16::from_be_bytes(pair)
                } else {
                    u16::from_le_bytes(pair)
                }
            })
            .collect();
        String::from_utf16(&units).map_err(|_| "not valid UTF-16 text".to_owned())
    };
    match bytes {
        [0xEF, 0xBB, 0xBF, rest @ ..] => utf8(rest),
        [0xFF, 0xFE, rest @ ..] if rest.len() % 2 == 0 => utf16(rest.chunks_exact(2), false),
        [0xFE, 0xFF, rest @ ..] if rest.len() % 2 == 0 => utf16(rest.chunks_exact(2), true),
        [0xFF, 0xFE, ..] | [0xFE, 0xFF, ..] => Err("UTF-16 text of an odd length".to_owned()),
        _ => utf8(bytes),
    }
}

fn utf8(bytes: &[u8]) -> Result<String, String> {
    String::from_utf8(bytes.to_vec()).map_err(|e| format!("not UTF-8 text: {e}"))
}
