//! TDX CCEL event logs and the ACPI CCEL table: parsing and replay never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(log) = attest::eventlog::EventLog::parse(data) {
        let _ = log.replay();
    }
    let _ = attest::eventlog::CcelTable::parse(data);
});
