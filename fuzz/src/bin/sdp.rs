//! AFL entry point of the `sdp` target; the body is [`drhub_fuzz::sdp::run`].

fn main() {
    afl::fuzz!(|data: &[u8]| drhub_fuzz::sdp::run(data));
}
