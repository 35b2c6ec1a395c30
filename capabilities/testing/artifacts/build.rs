//! Builds the hostile test programs (see `d402-guest-build`).
fn main() {
    d402_guest_build::main(d402_guest_build::Set::Hostile);
}
