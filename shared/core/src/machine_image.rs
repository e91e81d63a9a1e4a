//! Which machine image (AMI) an instance boots, chosen per job and instance type: Amazon Linux
//! 2023 for argv jobs, the ECS-optimized AL2023 image (Docker ready) for container jobs, the ECS
//! GPU-optimized AL2023 image (NVIDIA driver and container toolkit) for GPU types. Each is named
//! by AWS's public SSM parameter for its architecture and passed to RunInstances as
//! `resolve:ssm:NAME`, so no AMI id is pinned in the deployment and EC2 resolves today's image
//! at launch (with the caller's `ssm:GetParameters` right on exactly these parameters: the stack
//! grants [`MachineImage::all_parameters`]).
//!
//! Parameter names: AWS's "Query for the latest Amazon Linux AMI IDs using Systems Manager
//! Parameter Store" and "Retrieving Amazon ECS-optimized Linux AMI metadata" pages.

use crate::spec::Arch;
use serde::{Deserialize, Serialize};

/// The images spotfit boots. `Default` is the plain image (states written before images were
/// chosen per job ran on the launch template's, which was it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum MachineImage {
    /// Amazon Linux 2023 (argv jobs on CPU types).
    #[default]
    Al2023,
    /// ECS-optimized Amazon Linux 2023: Docker installed and running.
    EcsAl2023,
    /// ECS GPU-optimized Amazon Linux 2023: Docker, the NVIDIA driver and container toolkit.
    EcsGpuAl2023,
}

/// Root volume when the spec names no `resources.disk_gib`: what the launch template gave every
/// job before disks were sized per job.
pub const DEFAULT_ROOT_GIB: u32 = 30;

/// The largest gp3 volume, GiB (16 TiB).
pub const MAX_ROOT_GIB: u32 = 16_384;

impl MachineImage {
    /// The image a job needs on a type: a GPU type needs the driver whatever the job (an argv
    /// job runs on the host, a container gets `--gpus all`); a container job needs Docker.
    /// None where AWS publishes no such image: there is no ECS GPU-optimized AL2023 image for
    /// arm64, so arm64 GPU types (g5g) cannot run spotfit jobs and are not offered.
    pub fn for_job(container: bool, gpus: u32, arch: Arch) -> Option<MachineImage> {
        match (gpus > 0, container, arch) {
            (true, _, Arch::Arm64) => None,
            (true, _, Arch::X86_64) => Some(MachineImage::EcsGpuAl2023),
            (false, true, _) => Some(MachineImage::EcsAl2023),
            (false, false, _) => Some(MachineImage::Al2023),
        }
    }

    /// AWS's public SSM parameter holding the image's current AMI id for `arch`; None for the
    /// combinations AWS does not publish (see [`MachineImage::for_job`]).
    pub fn ssm_parameter(self, arch: Arch) -> Option<&'static str> {
        Some(match (self, arch) {
            (MachineImage::Al2023, Arch::X86_64) => {
                "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
            }
            (MachineImage::Al2023, Arch::Arm64) => {
                "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64"
            }
            (MachineImage::EcsAl2023, Arch::X86_64) => {
                "/aws/service/ecs/optimized-ami/amazon-linux-2023/recommended/image_id"
            }
            (MachineImage::EcsAl2023, Arch::Arm64) => {
                "/aws/service/ecs/optimized-ami/amazon-linux-2023/arm64/recommended/image_id"
            }
            (MachineImage::EcsGpuAl2023, Arch::X86_64) => {
                "/aws/service/ecs/optimized-ami/amazon-linux-2023/gpu/recommended/image_id"
            }
            (MachineImage::EcsGpuAl2023, Arch::Arm64) => return None,
        })
    }

    /// The `ImageId` RunInstances is given: `resolve:ssm:` and the parameter.
    pub fn image_id(self, arch: Arch) -> Option<String> {
        self.ssm_parameter(arch).map(|p| format!("resolve:ssm:{p}"))
    }

    /// The smallest root volume the image boots from, GiB: its snapshot's size (AL2023: 8; the
    /// ECS-optimized images: 30). A smaller `BlockDeviceMappings` size is refused by EC2.
    pub fn min_root_gib(self) -> u32 {
        match self {
            MachineImage::Al2023 => 8,
            MachineImage::EcsAl2023 | MachineImage::EcsGpuAl2023 => 30,
        }
    }

    /// Every parameter spotfit may resolve: what the launch role may read, and nothing else.
    pub fn all_parameters() -> Vec<&'static str> {
        let mut v = Vec::new();
        for image in [
            MachineImage::Al2023,
            MachineImage::EcsAl2023,
            MachineImage::EcsGpuAl2023,
        ] {
            for arch in [Arch::X86_64, Arch::Arm64] {
                v.extend(image.ssm_parameter(arch));
            }
        }
        v
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MachineImage::Al2023 => "al2023",
            MachineImage::EcsAl2023 => "ecs-al2023",
            MachineImage::EcsGpuAl2023 => "ecs-gpu-al2023",
        }
    }
}

/// The root volume a run gets, GiB: the spec's `resources.disk_gib` (or [`DEFAULT_ROOT_GIB`]),
/// never under what the image boots from.
pub fn root_volume_gib(disk_gib: Option<u32>, image: MachineImage) -> u32 {
    disk_gib.unwrap_or(DEFAULT_ROOT_GIB).max(image.min_root_gib())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_need_gets_its_image() {
        assert_eq!(
            MachineImage::for_job(false, 0, Arch::X86_64),
            Some(MachineImage::Al2023)
        );
        assert_eq!(MachineImage::for_job(false, 0, Arch::Arm64), Some(MachineImage::Al2023));
        assert_eq!(
            MachineImage::for_job(true, 0, Arch::Arm64),
            Some(MachineImage::EcsAl2023)
        );
        assert_eq!(
            MachineImage::for_job(true, 1, Arch::X86_64),
            Some(MachineImage::EcsGpuAl2023)
        );
        // an argv job on a GPU type still needs the driver
        assert_eq!(
            MachineImage::for_job(false, 4, Arch::X86_64),
            Some(MachineImage::EcsGpuAl2023)
        );
        assert_eq!(MachineImage::for_job(true, 1, Arch::Arm64), None);
    }

    #[test]
    fn every_offered_image_has_a_parameter_and_the_list_is_exact() {
        for container in [false, true] {
            for gpus in [0, 1] {
                for arch in [Arch::X86_64, Arch::Arm64] {
                    if let Some(image) = MachineImage::for_job(container, gpus, arch) {
                        let id = image.image_id(arch).expect("an offered image has a parameter");
                        assert!(id.starts_with("resolve:ssm:/aws/service/"), "{id}");
                        assert!(MachineImage::all_parameters().contains(&&id["resolve:ssm:".len()..]));
                    }
                }
            }
        }
        assert_eq!(MachineImage::all_parameters().len(), 5);
    }

    #[test]
    fn root_volume_never_under_the_image() {
        assert_eq!(root_volume_gib(None, MachineImage::Al2023), 30);
        assert_eq!(root_volume_gib(Some(10), MachineImage::Al2023), 10);
        assert_eq!(root_volume_gib(Some(10), MachineImage::EcsAl2023), 30);
        assert_eq!(root_volume_gib(Some(500), MachineImage::EcsGpuAl2023), 500);
    }
}
