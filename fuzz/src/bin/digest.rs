//! AFL entry point of the `digest` target; the body is [`drhub_fuzz::digest::run`].

fn main() {
    afl::fuzz!(|data: &[u8]| drhub_fuzz::digest::run(data));
}
