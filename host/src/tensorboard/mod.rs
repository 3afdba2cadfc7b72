//! TensorBoard: event files written from training events, and a managed `tensorboard`
//! process to view them.
//!
//! - [`proto`]: the Event/Summary protobuf messages, declared for `prost`.
//! - [`record`]: TFRecord framing with masked CRC32C (the `crc32c` crate).
//! - [`writer`]: one event file, scalars and text.
//! - [`hparams`]: the HParams plugin's session records, for the trials of a sweep.
//! - [`process`]: start, wait for and stop a `tensorboard` process and its children.
//! - [`managed`]: a TensorBoard for the length of a command, on its own thread.

pub mod hparams;
pub mod managed;
pub mod process;
pub mod proto;
pub mod record;
pub mod writer;

pub use managed::start_for;
pub use process::stop_all;
pub use writer::EventWriter;
