//! Model families, one module each (candle-transformers style: `Config` + `load(vb)` + `forward`).

pub mod lewm;
pub mod tdmpc2;
