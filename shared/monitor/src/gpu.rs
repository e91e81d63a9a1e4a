//! Per-GPU utilisation and memory, and the tracked processes' GPU memory, through NVML loaded
//! at run time (dlopen). No driver, no GPU, or the `nvml` feature off: [`GpuProbe::open`]
//! returns `None` and samples carry no GPU fields; that is not an error.

use spotfit_core::GpuSample;

/// An open NVML session.
#[derive(Debug)]
pub struct GpuProbe {
    #[cfg(feature = "nvml")]
    nvml: nvml_wrapper::Nvml,
    count: u32,
}

impl GpuProbe {
    /// Loads NVML and counts devices; `None` when there is nothing to measure.
    #[cfg(feature = "nvml")]
    pub fn open() -> Option<Self> {
        use std::ffi::OsStr;
        // Driver packages install the versioned name; the bare `.so` exists only with dev files.
        let nvml = nvml_wrapper::Nvml::builder()
            .lib_path(OsStr::new("libnvidia-ml.so.1"))
            .init()
            .or_else(|_| nvml_wrapper::Nvml::init())
            .ok()?;
        let count = nvml.device_count().ok()?;
        (count > 0).then_some(Self { nvml, count })
    }

    #[cfg(not(feature = "nvml"))]
    pub fn open() -> Option<Self> {
        None
    }

    pub fn count(&self) -> u32 {
        self.count
    }

    /// Fills `out` with one entry per GPU; `pids` are the tracked processes.
    #[cfg(feature = "nvml")]
    pub fn sample(&self, pids: &[u32], out: &mut Vec<GpuSample>) {
        use nvml_wrapper::enums::device::UsedGpuMemory;
        out.clear();
        for index in 0..self.count {
            let Ok(dev) = self.nvml.device_by_index(index) else {
                continue;
            };
            let util = dev.utilization_rates().map(|u| u.gpu as f64).unwrap_or(0.0);
            let (used, total) = dev.memory_info().map(|m| (m.used, m.total)).unwrap_or((0, 0));
            let mut proc_mem = None;
            let procs = dev
                .running_compute_processes()
                .into_iter()
                .chain(dev.running_graphics_processes());
            for p in procs.flatten() {
                if pids.contains(&p.pid) {
                    let add = match p.used_gpu_memory {
                        UsedGpuMemory::Used(b) => b,
                        UsedGpuMemory::Unavailable => 0,
                    };
                    *proc_mem.get_or_insert(0) += add;
                }
            }
            out.push(GpuSample {
                index,
                util_pct: util,
                mem_used_bytes: used,
                mem_total_bytes: total,
                proc_mem_bytes: proc_mem,
            });
        }
    }

    #[cfg(not(feature = "nvml"))]
    pub fn sample(&self, _pids: &[u32], out: &mut Vec<GpuSample>) {
        out.clear();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    #[test]
    fn no_driver_means_none_not_an_error() {
        // On a host without the NVIDIA driver this must quietly be None; with one, Some.
        let have_driver = std::path::Path::new("/proc/driver/nvidia").exists();
        assert_eq!(super::GpuProbe::open().is_some(), have_driver);
    }
}
