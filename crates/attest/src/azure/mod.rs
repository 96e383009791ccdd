//! Azure confidential VMs: HCL report, vTPM quote, and the SNP report or TD quote inside.
