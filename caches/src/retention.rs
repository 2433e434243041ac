//! What `ferry prune` needs to know of caches: every cache of every scope, when it expires
//! (a restore hit pushes that forward), its archive and its used marker.

use std::collections::HashMap;

use ferry_core::manifest::Kind;
use ferry_core::retention::{self, Entry, Retained, SharedUse, Survey};
use ferry_core::store::{Store, StoreError};

use crate::{CacheManifest, Used};

/// Caches' part in pruning.
pub struct Caches;

#[async_trait::async_trait]
impl Retained for Caches {
    async fn survey(&self, store: &Store, project: &str) -> Result<Survey, StoreError> {
        let objects = crate::objects(store, project).await?;
        let mut survey = Survey::default();
        let markers: HashMap<String, Used> = retention::read_all(store, objects.used.clone())
            .await?
            .into_iter()
            .filter_map(|(info, bytes)| {
                let used: Used = serde_json::from_slice(&bytes).ok()?;
                Some((info.path, used))
            })
            .collect();
        let scopes: HashMap<String, Option<String>> = objects
            .manifests
            .iter()
            .map(|(scope, info)| (info.path.clone(), scope.clone()))
            .collect();
        let infos = objects
            .manifests
            .into_iter()
            .map(|(_, info)| info)
            .collect();
        retention::read_entries(store, &mut survey, infos, |info, m: CacheManifest| {
            let scope = scopes.get(&info.path).cloned().flatten();
            // The marker has the manifest's name in the `used` folder beside `keys`.
            let marker = info
                .path
                .rsplit_once("/keys/")
                .map(|(base, name)| format!("{base}/used/{name}"));
            let used = marker.as_ref().and_then(|m| markers.get(m));
            let expires = match (m.expires, used) {
                (Some(e), Some(u)) => Some(e.max(u.expires)),
                (e, _) => e,
            };
            Entry {
                kind: Kind::Cache,
                name: match &scope {
                    Some(s) => format!("{} (scope {s})", m.body.key),
                    None => m.body.key.clone(),
                },
                manifest: info.path,
                created: m.created,
                expires,
                last_used: used.map(|u| u.last_used),
                data: vec![(m.data.path, m.data.size)],
                shared: m.body.tree.packs.into_iter().map(SharedUse::from).collect(),
                companions: marker
                    .filter(|mk| markers.contains_key(mk))
                    .into_iter()
                    .collect(),
                evictable: true,
            }
        })
        .await?;
        survey.loose = objects.data;
        survey.loose.extend(objects.used);
        survey.shared = objects.packs;
        Ok(survey)
    }
}
