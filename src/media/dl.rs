//! Run-time loading of the NVIDIA media libraries (dlopen through `libloading`), shared by the codec bindings:
//! open a library by the first of its names that loads, resolve each symbol as the function-pointer type its
//! binding declares, and describe failures as typed [`MediaError`]s naming the library and the symbol.

use std::sync::{Arc, OnceLock};

use super::MediaError;

/// The function table of one library, resolved from it (each binding's `sys::Functions`).
pub trait Functions: Sized {
    /// The file names tried in order (`libnvjpeg.so.13`, `libnvjpeg.so`).
    const NAMES: &'static [&'static str];
    /// Resolves every symbol of `lib` (opened as `name`).
    fn resolve(lib: &libloading::Library, name: &str) -> Result<Self, MediaError>;
}

/// A loaded library and its resolved functions (reached through `Deref`). The function pointers stay valid while
/// this value lives (it owns the `dlopen` reference); owned handles keep an `Arc` of it so that the library
/// outlives them.
pub struct Loaded<F> {
    functions: F,
    name: String,
    /// Keeps the library mapped while the pointers above are in use. Declared last: dropped after them.
    _lib: libloading::Library,
}

impl<F> std::ops::Deref for Loaded<F> {
    type Target = F;

    fn deref(&self) -> &F {
        &self.functions
    }
}

impl<F> std::fmt::Debug for Loaded<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Library").field("name", &self.name).finish_non_exhaustive()
    }
}

impl<F: Functions> Loaded<F> {
    /// Loads the library by the first of [`Functions::NAMES`] the dynamic loader finds and resolves every symbol.
    pub fn load() -> Result<Self, MediaError> {
        let (name, lib) = open_first(F::NAMES)?;
        Self::resolved(name, lib)
    }

    /// Loads the library at `path` (a file name or a path) and resolves every symbol; for tests and for
    /// installations outside the loader's search path.
    pub fn load_from(path: &str) -> Result<Self, MediaError> {
        Self::resolved(path, open(path)?)
    }

    /// The file name that was opened.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn resolved(name: &str, lib: libloading::Library) -> Result<Self, MediaError> {
        Ok(Self { functions: F::resolve(&lib, name)?, name: name.to_string(), _lib: lib })
    }
}

/// The process's one copy of a library, loaded on first use (a failed load is retried by the next call).
pub(crate) fn cached<F: Functions>(cell: &'static OnceLock<Arc<Loaded<F>>>) -> Result<Arc<Loaded<F>>, MediaError> {
    if let Some(lib) = cell.get() {
        return Ok(lib.clone());
    }
    let lib = Arc::new(Loaded::load()?);
    Ok(cell.get_or_init(|| lib).clone())
}

/// Opens the first of `names` that the dynamic loader finds (`LD_LIBRARY_PATH`, the ld.so cache); the error
/// names them all and gives the first failure's reason.
pub(crate) fn open_first<'n>(names: &[&'n str]) -> Result<(&'n str, libloading::Library), MediaError> {
    let mut first_failure = None;
    for &name in names {
        match open_raw(name) {
            Ok(lib) => return Ok((name, lib)),
            Err(e) => {
                first_failure.get_or_insert(e);
            }
        }
    }
    Err(MediaError::LibraryMissing {
        name: names.join(" or "),
        reason: first_failure.map(|e| describe(&e)).unwrap_or_default(),
    })
}

/// Opens the library at `path` (a file name or a path).
pub(crate) fn open(path: &str) -> Result<libloading::Library, MediaError> {
    open_raw(path).map_err(|e| MediaError::LibraryMissing { name: path.to_string(), reason: describe(&e) })
}

fn open_raw(name: &str) -> Result<libloading::Library, libloading::Error> {
    // SAFETY: loading an NVIDIA media library (libnvjpeg, libnvcuvid of the driver) runs its ELF initialisers,
    // which set up the library's own state only. Loading another library by mistake is caught when its symbols
    // do not resolve.
    unsafe { libloading::Library::new(name) }
}

/// Resolves `symbol` of `lib` (opened as `library`) as a value of type `T`.
///
/// # Safety
/// `T` must be the function-pointer type of the symbol's C declaration (same parameters, same return type, C
/// calling convention), and the pointer may only be used while `lib` stays loaded.
pub(crate) unsafe fn symbol<T: Copy>(
    lib: &libloading::Library,
    library: &str,
    symbol: &'static str,
) -> Result<T, MediaError> {
    // SAFETY: the caller guarantees `T` (see above); the value is copied out of the `Symbol`.
    unsafe { lib.get::<T>(symbol.as_bytes()) }.map(|s| *s).map_err(|e| MediaError::SymbolMissing {
        library: library.to_string(),
        symbol,
        reason: describe(&e),
    })
}

/// libloading's message and the `dlerror` text under it (its error source), on one line.
fn describe(e: &libloading::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    text.lines().next().unwrap_or_default().to_string()
}
