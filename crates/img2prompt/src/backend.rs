//! The one place that maps a backend name (`--backend ndarray|flex|cpu|wgpu|cuda`) to a Burn
//! [`Device`]. In burn 0.22 the device *is* the backend: models and tensors carry no backend type.

use std::fmt;
use std::str::FromStr;

use burn::tensor::Device;

use crate::error::Error;

/// A Burn backend this crate can run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// burn-ndarray (CPU; deprecated upstream, kept selectable).
    Ndarray,
    /// burn-flex, the pure-Rust CPU backend (the default CPU device: fastest measured here,
    /// see docs/PERFORMANCE.md).
    Flex,
    /// CubeCL's CPU runtime (opt-in feature `cpu`: its build downloads LLVM).
    Cpu,
    /// wgpu: Vulkan/Metal/DX12 GPUs (and lavapipe on CPU-only machines).
    Wgpu,
    /// CUDA (opt-in feature `cuda`).
    Cuda,
}

impl Backend {
    /// Every backend name, compiled in or not.
    pub const ALL: [Backend; 5] = [
        Backend::Ndarray,
        Backend::Flex,
        Backend::Cpu,
        Backend::Wgpu,
        Backend::Cuda,
    ];

    /// The backend used when none is asked for: the fastest CPU backend compiled in.
    pub fn default_cpu() -> Backend {
        if cfg!(feature = "flex") {
            Backend::Flex
        } else if cfg!(feature = "ndarray") {
            Backend::Ndarray
        } else if cfg!(feature = "cpu") {
            Backend::Cpu
        } else if cfg!(feature = "wgpu") {
            Backend::Wgpu
        } else {
            Backend::Cuda
        }
    }

    /// The lower-case name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Ndarray => "ndarray",
            Backend::Flex => "flex",
            Backend::Cpu => "cpu",
            Backend::Wgpu => "wgpu",
            Backend::Cuda => "cuda",
        }
    }

    /// Whether this build was compiled with the backend's cargo feature.
    pub fn is_compiled(self) -> bool {
        match self {
            Backend::Ndarray => cfg!(feature = "ndarray"),
            Backend::Flex => cfg!(feature = "flex"),
            Backend::Cpu => cfg!(feature = "cpu"),
            Backend::Wgpu => cfg!(feature = "wgpu"),
            Backend::Cuda => cfg!(feature = "cuda"),
        }
    }

    /// The backends compiled into this build.
    pub fn compiled() -> Vec<Backend> {
        Self::ALL.into_iter().filter(|b| b.is_compiled()).collect()
    }

    /// The device of this backend (the default adapter/GPU 0 for wgpu/cuda).
    ///
    /// Fails with [`Error::BackendNotCompiled`] when the cargo feature is off.
    pub fn device(self) -> Result<Device, Error> {
        match self {
            #[cfg(feature = "ndarray")]
            #[allow(deprecated)]
            Backend::Ndarray => Ok(Device::ndarray()),
            #[cfg(feature = "flex")]
            Backend::Flex => Ok(Device::flex()),
            #[cfg(feature = "cpu")]
            Backend::Cpu => Ok(Device::cpu()),
            #[cfg(feature = "wgpu")]
            Backend::Wgpu => Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)),
            #[cfg(feature = "cuda")]
            Backend::Cuda => Ok(Device::cuda(0)),
            #[allow(unreachable_patterns)]
            other => Err(Error::BackendNotCompiled(other.name())),
        }
    }
}

impl Default for Backend {
    fn default() -> Self {
        Backend::default_cpu()
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Backend {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|b| b.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| Error::UnknownBackend(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for backend in Backend::ALL {
            assert_eq!(backend.name().parse::<Backend>().unwrap(), backend);
        }
        assert_eq!("FLEX".parse::<Backend>().unwrap(), Backend::Flex);
        assert!(matches!(
            "tpu".parse::<Backend>(),
            Err(Error::UnknownBackend(name)) if name == "tpu"
        ));
    }

    #[test]
    fn default_is_a_compiled_cpu_backend() {
        let backend = Backend::default_cpu();
        assert!(backend.is_compiled());
        assert!(backend.device().is_ok());
        assert_ne!(backend, Backend::Wgpu);
    }

    #[test]
    fn uncompiled_backend_is_a_clear_error() {
        for backend in Backend::ALL.into_iter().filter(|b| !b.is_compiled()) {
            let err = backend.device().expect_err("not compiled");
            assert!(err.to_string().contains(backend.name()), "{err}");
        }
    }
}
