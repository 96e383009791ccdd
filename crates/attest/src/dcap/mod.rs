//! Intel DCAP: SGX quote v3, TDX quote v4/v5, PCS collateral, and their verification.
