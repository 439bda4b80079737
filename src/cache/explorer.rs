//! What the web UI reads from the catalogue, and the admin log it writes: the catalogue's
//! blocking queries run here on the blocking pool, so handlers never touch SQLite.

use super::{CacheError, blocking};
use crate::ecosystem::Ecosystem;
use crate::storage::Catalogue;
use crate::storage::browse::{
    AdminLogEntry, ProjectDetail, ProjectListing, ProjectQuery, ProjectSort, RecentDownload,
};

/// A page of a listing, as the UI asks for it.
#[derive(Debug, Clone)]
pub struct ListingRequest {
    pub ecosystem: Ecosystem,
    pub contains: String,
    pub sort: ProjectSort,
    pub offset: u64,
    pub limit: u64,
}

#[derive(Clone)]
pub struct Explorer {
    catalogue: Catalogue,
}

impl Explorer {
    pub fn new(catalogue: Catalogue) -> Self {
        Self { catalogue }
    }

    pub async fn projects(&self, request: ListingRequest) -> Result<ProjectListing, CacheError> {
        let catalogue = self.catalogue.clone();
        blocking(move || {
            catalogue.search_projects(&ProjectQuery {
                ecosystem: request.ecosystem,
                contains: &request.contains,
                sort: request.sort,
                offset: request.offset,
                limit: request.limit,
            })
        })
        .await
    }

    pub async fn project(
        &self,
        ecosystem: Ecosystem,
        name: String,
    ) -> Result<Option<ProjectDetail>, CacheError> {
        let catalogue = self.catalogue.clone();
        blocking(move || catalogue.project_detail(ecosystem, &name)).await
    }

    pub async fn recent_downloads(&self, limit: u64) -> Result<Vec<RecentDownload>, CacheError> {
        let catalogue = self.catalogue.clone();
        blocking(move || catalogue.recent_downloads(limit)).await
    }

    pub async fn record_admin_action(&self, entry: AdminLogEntry) -> Result<(), CacheError> {
        let catalogue = self.catalogue.clone();
        blocking(move || catalogue.record_admin_action(&entry)).await
    }

    pub async fn admin_log(&self, limit: u64) -> Result<Vec<AdminLogEntry>, CacheError> {
        let catalogue = self.catalogue.clone();
        blocking(move || catalogue.admin_log(limit)).await
    }
}
