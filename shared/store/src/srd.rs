//! TEMPORARY STUB (replaced by the real reader at merge).
#![allow(missing_docs, dead_code)]
use crate::CampaignStore;
use std::path::{Path, PathBuf};
#[derive(Debug, thiserror::Error)]
#[error("stub")]
pub struct E;
pub struct SrdPackage;
impl SrdPackage {
    pub fn open(_: &Path) -> Result<Self, E> {
        Err(E)
    }
}
pub fn fetch_package(_: &Path) -> Result<PathBuf, E> {
    Err(E)
}
pub struct ImportReport {
    pub monsters: usize,
    pub spells: usize,
    pub equipment: usize,
    pub written: usize,
}
pub async fn import(
    _: &SrdPackage,
    _: &dyn CampaignStore,
    _: usize,
    _: impl FnMut(()),
) -> Result<ImportReport, E> {
    Err(E)
}
