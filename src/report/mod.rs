//! What runner shows and keeps: the plan preview, graph renderings, the live view
//! of a run (and the writer behind it), its summary, its record and its timeline.

pub(crate) mod console;
pub(crate) mod failure;
pub mod graph;
pub(crate) mod history;
pub(crate) mod logs;
pub(crate) mod lossy;
pub mod preview;
pub(crate) mod record;
pub(crate) mod summary;
pub(crate) mod timeline;
