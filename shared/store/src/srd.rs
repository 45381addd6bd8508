//! Reading the SRD 5.1 package (placeholder: being written).
