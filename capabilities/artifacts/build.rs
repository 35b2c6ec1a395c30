//! Builds the capability components (see `d402-guest-build`).
fn main() {
    d402_guest_build::main(d402_guest_build::Set::Capabilities);
}
