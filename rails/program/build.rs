//! Assembles `src/d402.s` into the program's ELF (sBPF V0, which agave 3.1 loads; the assembler's
//! default V3 output is rejected) in `OUT_DIR`, so the bytes follow from the source alone and their
//! hash can be recorded in `rails/contracts/DEPLOYMENTS.md`.

use sbpf_assembler::{Assembler, AssemblerOption, SbpfArch};

fn main() {
    println!("cargo:rerun-if-changed=src/d402.s");
    let source = std::fs::read_to_string("src/d402.s").expect("read src/d402.s");
    let elf = match Assembler::new(AssemblerOption::default().with_arch(SbpfArch::V0))
        .assemble(&source)
    {
        Ok(elf) => elf,
        Err(errors) => {
            for e in &errors {
                println!("cargo:warning=d402.s: {e:?}");
            }
            panic!("src/d402.s did not assemble ({} errors)", errors.len());
        }
    };
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    std::fs::write(out.join("d402_program.so"), elf).expect("write the program");
}
