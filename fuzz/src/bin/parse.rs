//! AFL entry point of the `parse` target; the body is [`drhub_fuzz::parse::run`].

fn main() {
    afl::fuzz!(|data: &[u8]| drhub_fuzz::parse::run(data));
}
