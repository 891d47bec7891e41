//! Shared code of the runnable examples. Each program in `src/bin` starts
//! with the command that runs it.

pub mod shop;
pub mod w3c;
