//! The stack lets the launch function resolve exactly the SSM parameters of the images spotfit
//! boots. Rust chooses them (`spotfit_core::machine_image`); infra/lib/spotfit-stack.ts reads
//! `infra/machine-images.json` to grant `ssm:GetParameters` on them. This test fails when the
//! Rust list changes and the file is not updated (`SPOTFIT_BLESS=1` rewrites it), so a new image
//! cannot ship without the right to resolve it, nor a grant outlive its image.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use spotfit_core::machine_image::MachineImage;
use spotfit_core::spec::Arch;
use std::path::PathBuf;

#[test]
fn the_stack_grants_exactly_the_parameters_rust_resolves() {
    let mut images = serde_json::Map::new();
    for image in [
        MachineImage::Al2023,
        MachineImage::EcsAl2023,
        MachineImage::EcsGpuAl2023,
    ] {
        let mut by_arch = serde_json::Map::new();
        for arch in [Arch::X86_64, Arch::Arm64] {
            if let Some(p) = image.ssm_parameter(arch) {
                by_arch.insert(arch.as_str().into(), p.into());
            }
        }
        images.insert(image.as_str().into(), by_arch.into());
    }
    let doc = serde_json::json!({
        "_comment": "Written by shared/core/tests/machine_images_contract.rs (SPOTFIT_BLESS=1): the public SSM parameters of the images spotfit boots, per image and architecture. The stack grants the launch function ssm:GetParameters on exactly these.",
        "parameters": MachineImage::all_parameters(),
        "images": images,
    });
    let want = serde_json::to_string_pretty(&doc).unwrap() + "\n";
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../infra/machine-images.json");
    if std::env::var_os("SPOTFIT_BLESS").is_some() {
        std::fs::write(&path, &want).unwrap();
        return;
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "{} is stale: Rust now resolves\n{want}\n(run with SPOTFIT_BLESS=1)",
        path.display()
    );
}
