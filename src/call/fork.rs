//! One leg per endpoint of the called user (DR-FORK-1) and the choice of the one final
//! response the SBC gets when every leg failed (DR-FORK-7, RFC 3261 §16.7).

/// Where a fork stands, from the SBC's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForkState {
    /// Offered the call, nothing heard yet.
    Trying,
    /// Sent "call progress": the SBC got a 180 with this fork's To tag.
    Ringing,
    /// Sent "media answer": the SBC got a 183 with SDP (DR-FORK-3).
    Early,
    /// Accepted the call: the SBC got the 200 (DR-FORK-5).
    Answered,
    /// Ended without answering, with this final status.
    Failed(u16),
    /// Stopped by the proxy (another fork answered, the SBC cancelled, ring timeout).
    Cancelled,
}

impl ForkState {
    /// True while the fork can still answer.
    pub fn is_live(self) -> bool {
        matches!(
            self,
            ForkState::Trying | ForkState::Ringing | ForkState::Early
        )
    }
}

/// RFC 3261 §16.7 step 6, as the spec words it for Direct Routing (DR-FORK-7): any 6xx
/// wins; otherwise the lowest class; within 4xx the most telling status (486 Busy Here
/// beats 480 Temporarily Unavailable, which beats 408 and 487). `None` for no responses.
pub fn best_final(codes: &[u16]) -> Option<u16> {
    codes
        .iter()
        .copied()
        .filter(|c| (300..700).contains(c))
        .min_by_key(|c| rank(*c))
}

/// Lower is better.
fn rank(code: u16) -> (u8, u16, u16) {
    // Within 4xx, statuses that tell the caller most come first.
    const PREFERRED_4XX: [u16; 9] = [486, 404, 403, 484, 415, 488, 480, 408, 487];
    match code {
        600..=699 => (0, if code == 603 { 0 } else { 1 }, code),
        400..=499 => {
            let pos = PREFERRED_4XX
                .iter()
                .position(|c| *c == code)
                .map_or(PREFERRED_4XX.len(), |p| p);
            (1, pos as u16, code)
        }
        500..=599 => (2, 0, code),
        _ => (3, 0, code),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dr_fork_7_best_final_response() {
        let cases: &[(&[u16], Option<u16>)] = &[
            (&[], None),
            (&[480], Some(480)),
            (&[480, 486], Some(486)),
            (&[486, 480], Some(486)),
            (&[503, 480], Some(480)),
            (&[486, 603], Some(603)),
            (&[600, 603], Some(603)),
            (&[600, 486], Some(600)),
            (&[408, 480], Some(480)),
            (&[487, 408], Some(408)),
            (&[500, 503], Some(500)),
            (&[499, 486], Some(486)),
            (&[100, 180], None),
        ];
        for (codes, want) in cases {
            assert_eq!(best_final(codes), *want, "{codes:?}");
        }
    }

    #[test]
    fn live_states() {
        assert!(ForkState::Early.is_live());
        assert!(!ForkState::Failed(486).is_live());
        assert!(!ForkState::Cancelled.is_live());
    }
}
