//! TDX CCEL event log (TCG2 crypto-agile) parsing and replay to RTMR values.
