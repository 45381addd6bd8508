//! SRD 5.1 to compendium templates (placeholder: being written).
