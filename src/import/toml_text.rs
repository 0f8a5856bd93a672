//! Writing TOML text. drhub reads TOML with the `toml` crate but writes none elsewhere,
//! so the few forms a fragment needs are written here: comments, table headers and
//! `key = value` lines with strings, integers, booleans and arrays of them.
//!
//! Everything from the input passes through [`basic_string`], [`pattern_string`] or
//! [`Block::comment`], which escape or replace what would otherwise end a string or a
//! comment early.

use std::fmt::Write as _;

/// A TOML basic string, `"..."`, with `"`, `\` and control characters escaped.
pub(super) fn basic_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A regular expression as a literal string, `'...'`, so that its backslashes read as
/// they are written (as `config/drhub.toml` writes them); a basic string when the
/// pattern has a `'` or a control character, which a literal string cannot hold.
pub(super) fn pattern_string(s: &str) -> String {
    if s.contains('\'') || s.chars().any(char::is_control) {
        basic_string(s)
    } else {
        format!("'{s}'")
    }
}

/// An array of basic strings on one line.
pub(super) fn string_array<S: AsRef<str>>(items: &[S]) -> String {
    let items: Vec<String> = items.iter().map(|s| basic_string(s.as_ref())).collect();
    format!("[{}]", items.join(", "))
}

/// How wide [`Block::bullet`] keeps its lines, as `config/drhub.toml` keeps its comments.
pub(super) const COMMENT_WIDTH: usize = 88;

/// Lines of TOML at one indentation, as `config/drhub.toml` indents a tenant's tables.
#[derive(Debug, Default)]
pub(super) struct Block {
    text: String,
    indent: &'static str,
}

impl Block {
    pub fn new(indent: &'static str) -> Block {
        Block {
            text: String::new(),
            indent,
        }
    }

    /// `# text`; a line break or other control character in `text` becomes a space, as
    /// a TOML comment ends at the line's end and allows no control characters but tab.
    pub fn comment(&mut self, text: &str) -> &mut Block {
        let clean: String = text
            .chars()
            .map(|c| if c.is_control() && c != '\t' { ' ' } else { c })
            .collect();
        if clean.is_empty() {
            self.line("#")
        } else {
            self.line(&format!("# {clean}"))
        }
    }

    /// `# - text`, wrapped at word boundaries so that lines stay within
    /// [`COMMENT_WIDTH`] columns (a word longer than that gets a line of its own).
    pub fn bullet(&mut self, text: &str) -> &mut Block {
        let width = COMMENT_WIDTH.saturating_sub(self.indent.len() + 4);
        let mut line = String::new();
        let mut first = true;
        for word in text.split_whitespace() {
            if !line.is_empty() && line.len() + 1 + word.len() > width {
                self.bullet_line(&line, first);
                first = false;
                line.clear();
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
        self.bullet_line(&line, first);
        self
    }

    fn bullet_line(&mut self, text: &str, first: bool) {
        let marker = if first { "- " } else { "  " };
        self.comment(format!("{marker}{text}").trim_end());
    }

    /// `[[name]]`, an entry of an array of tables.
    pub fn table_array(&mut self, name: &str) -> &mut Block {
        self.line(&format!("[[{name}]]"))
    }

    /// `key = value`, where `value` is TOML already (from the functions above, or a
    /// number or boolean).
    pub fn key(&mut self, key: &str, value: impl std::fmt::Display) -> &mut Block {
        self.line(&format!("{key} = {value}"))
    }

    pub fn blank(&mut self) -> &mut Block {
        self.text.push('\n');
        self
    }

    fn line(&mut self, line: &str) -> &mut Block {
        self.text.push_str(self.indent);
        self.text.push_str(line);
        self.text.push('\n');
        self
    }

    pub fn into_text(self) -> String {
        self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value a TOML parser reads back from `key = <toml>`.
    fn read_back(toml: &str) -> toml::Value {
        let table: toml::Table = toml::from_str(&format!("k = {toml}"))
            .unwrap_or_else(|e| panic!("`{toml}` is not TOML: {e}"));
        table["k"].clone()
    }

    #[test]
    fn basic_strings_read_back_as_written() {
        for (input, expected) in [
            ("plain", r#""plain""#),
            ("US and Canada", r#""US and Canada""#),
            (r#"say "hi""#, r#""say \"hi\"""#),
            (r"C:\path", r#""C:\\path""#),
            ("two\nlines", r#""two\nlines""#),
            ("tab\there", r#""tab\there""#),
            ("cr\r", r#""cr\r""#),
            ("bell\u{7}", r#""bell\u0007""#),
            ("del\u{7f}", r#""del\u007F""#),
            ("é ü 日本", r#""é ü 日本""#),
            ("", r#""""#),
        ] {
            let quoted = basic_string(input);
            assert_eq!(quoted, expected, "{input:?}");
            assert_eq!(read_back(&quoted).as_str(), Some(input), "{quoted}");
        }
    }

    #[test]
    fn patterns_are_literal_strings_unless_they_cannot_be() {
        for (input, expected) in [
            (r"^\+1(\d{10})$", r"'^\+1(\d{10})$'"),
            (r"\d+", r"'\d+'"),
            (r#"^"quoted"$"#, r#"'^"quoted"$'"#),
            (r"^it's\d$", r#""^it's\\d$""#),
            ("a\nb", r#""a\nb""#),
        ] {
            let quoted = pattern_string(input);
            assert_eq!(quoted, expected, "{input:?}");
            assert_eq!(read_back(&quoted).as_str(), Some(input), "{quoted}");
        }
    }

    #[test]
    fn string_arrays_read_back_as_written() {
        let items = ["US and Canada", "say \"x\"", ""];
        let toml = string_array(&items);
        assert_eq!(toml, r#"["US and Canada", "say \"x\"", ""]"#);
        let back = read_back(&toml);
        let back: Vec<&str> = back
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(back, items);
        assert_eq!(string_array::<&str>(&[]), "[]");
    }

    #[test]
    fn bullets_wrap_at_word_boundaries() {
        let long = "word ".repeat(30);
        let very_long_word = "x".repeat(100);
        for (indent, text, expected) in [
            ("", "short", vec!["# - short"]),
            ("", "", vec!["# -"]),
            ("  ", "indented", vec!["  # - indented"]),
            (
                "",
                very_long_word.as_str(),
                vec![&*format!("# - {very_long_word}")],
            ),
        ] {
            let mut b = Block::new(indent);
            b.bullet(text);
            let text = b.into_text();
            let lines: Vec<&str> = text.lines().collect();
            assert_eq!(lines, expected);
        }
        let mut b = Block::new("  ");
        b.bullet(&long);
        let text = b.into_text();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines.len() > 1, "{text}");
        assert!(lines[0].starts_with("  # - word"), "{text}");
        for line in &lines {
            assert!(line.len() <= COMMENT_WIDTH, "{line:?} is too long");
        }
        for line in &lines[1..] {
            assert!(line.starts_with("  #   word"), "{line:?}");
        }
        let words: usize = lines.iter().map(|l| l.matches("word").count()).sum();
        assert_eq!(words, 30);
    }

    #[test]
    fn a_comment_cannot_end_early_or_start_a_table() {
        let mut b = Block::new("  ");
        b.comment("from \"x\"\n[[tenant]]\rid = \"evil\"\u{0}")
            .table_array("tenant.trunk")
            .key("fqdn", basic_string("sbc1.contoso.com"))
            .key("port", 5061)
            .key("enabled", true);
        let text = b.into_text();
        assert_eq!(
            text,
            "  # from \"x\" [[tenant]] id = \"evil\" \n  [[tenant.trunk]]\n  fqdn = \"sbc1.contoso.com\"\n  port = 5061\n  enabled = true\n"
        );
        let table: toml::Table = toml::from_str(&format!("[[tenant]]\n{text}")).unwrap();
        let tenant = &table["tenant"][0];
        assert!(
            tenant.get("id").is_none(),
            "the comment became a key: {text}"
        );
        assert_eq!(tenant["trunk"][0]["port"].as_integer(), Some(5061));
    }
}
