//! The embedded vector store: one qdrant-edge shard per embedding space under
//! `<data>/vectors/<space>`. qdrant-edge is synchronous, so every call runs on a blocking thread.
//!
//! A shard per space (rather than one shard with many named vectors) lets a new model add its
//! space without touching existing segments, and lets an abandoned space be dropped as a folder.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use futures::FutureExt;
use qdrant_edge::{
    Condition, CountRequest, CreateIndex, Distance, EdgeConfigBuilder, EdgeShard,
    EdgeVectorParamsBuilder, FieldCondition, FieldIndexOperations, Filter, JsonPath, Match,
    MultiVectorComparator, MultiVectorConfig, NamedQuery, NamedVectors, PayloadFieldSchema,
    PayloadSchemaType, PointId, PointInsertOperations, PointOperations, PointStruct, QueryEnum,
    ScrollRequest, SearchRequest, UpdateOperation, Vector, VectorInternal, VectorStructInternal,
    WithPayloadInterface, WithVector,
};

use super::{
    Result, SearchFilter, SpaceSpec, StoreError, StoredVectors, VectorHit, VectorPoint, VectorStore,
};

/// The vector inside each per-space shard is named after the space's last part.
const VECTOR_NAME: &str = "dense";

/// Marker file of a multivector space (its points score by `max_sim`).
const MULTIVECTOR_MARKER: &str = "multivector";

struct Space {
    shard: EdgeShard,
    dims: usize,
    multivector: bool,
}

/// qdrant-edge shards, one per embedding space.
#[derive(Clone)]
pub struct EdgeStore {
    root: PathBuf,
    spaces: Arc<Mutex<HashMap<String, Arc<Space>>>>,
}

fn engine(e: impl std::fmt::Display) -> StoreError {
    StoreError::Engine(e.to_string())
}

fn folder_name(space: &str) -> String {
    space
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_' {
                c
            } else {
                '~'
            }
        })
        .collect()
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Join(e.to_string()))?
}

impl EdgeStore {
    /// Opens every existing space under `root` (creating `root` if needed).
    pub fn open(root: &Path) -> Result<Self> {
        std::fs::create_dir_all(root).map_err(|source| StoreError::Io {
            path: root.display().to_string(),
            source,
        })?;
        let mut spaces = HashMap::new();
        let entries = std::fs::read_dir(root).map_err(|source| StoreError::Io {
            path: root.display().to_string(),
            source,
        })?;
        for entry in entries.flatten() {
            let path = entry.path();
            let name_file = path.join("space-name");
            let Ok(name) = std::fs::read_to_string(&name_file) else {
                continue;
            };
            let shard = EdgeShard::load(&path, None).map_err(engine)?;
            let dims = read_dims(&path)?;
            let multivector = path.join(MULTIVECTOR_MARKER).exists();
            spaces.insert(
                name.trim().to_string(),
                Arc::new(Space {
                    shard,
                    dims,
                    multivector,
                }),
            );
        }
        Ok(Self {
            root: root.to_path_buf(),
            spaces: Arc::new(Mutex::new(spaces)),
        })
    }

    fn space(&self, name: &str) -> Option<Arc<Space>> {
        self.spaces
            .lock()
            .expect("space map lock")
            .get(name)
            .cloned()
    }

    /// Names of the spaces that exist on disk.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .spaces
            .lock()
            .expect("space map lock")
            .keys()
            .cloned()
            .collect();
        names.sort();
        names
    }

    fn create_space(&self, spec: &SpaceSpec) -> Result<()> {
        let mut spaces = self.spaces.lock().expect("space map lock");
        if let Some(existing) = spaces.get(&spec.name) {
            return spec.check_existing(existing.dims, existing.multivector);
        }
        let path = self.root.join(folder_name(&spec.name));
        let io = |source| StoreError::Io {
            path: path.display().to_string(),
            source,
        };
        // A folder without its name marker is a creation that was interrupted: start again.
        if path.exists() {
            std::fs::remove_dir_all(&path).map_err(io)?;
        }
        std::fs::create_dir_all(&path).map_err(io)?;
        let mut params = EdgeVectorParamsBuilder::new(spec.dims, Distance::Cosine);
        if spec.multivector {
            params = params.multivector_config(MultiVectorConfig {
                comparator: MultiVectorComparator::MaxSim,
            });
        }
        let config = EdgeConfigBuilder::new()
            .vector(VECTOR_NAME, params.build())
            .build();
        let shard = EdgeShard::new(&path, config).map_err(engine)?;
        for field in ["source_id", "modality"] {
            shard
                .update(UpdateOperation::FieldIndexOperation(
                    FieldIndexOperations::CreateIndex(CreateIndex {
                        field_name: json_path(field),
                        field_schema: Some(PayloadFieldSchema::FieldType(
                            PayloadSchemaType::Keyword,
                        )),
                    }),
                ))
                .map_err(engine)?;
        }
        flush_shard(&spec.name, &shard)?;
        std::fs::write(path.join("dims"), spec.dims.to_string()).map_err(io)?;
        if spec.multivector {
            std::fs::write(path.join(MULTIVECTOR_MARKER), "max_sim").map_err(io)?;
        }
        // Written last: its presence means the space is complete.
        std::fs::write(path.join("space-name"), &spec.name).map_err(io)?;
        spaces.insert(
            spec.name.clone(),
            Arc::new(Space {
                shard,
                dims: spec.dims,
                multivector: spec.multivector,
            }),
        );
        Ok(())
    }
}

fn read_dims(path: &Path) -> Result<usize> {
    let file = path.join("dims");
    let text = std::fs::read_to_string(&file).map_err(|source| StoreError::Io {
        path: file.display().to_string(),
        source,
    })?;
    text.trim()
        .parse()
        .map_err(|_| StoreError::Engine(format!("{} is not a number", file.display())))
}

fn point_id(id: &str) -> Result<PointId> {
    uuid::Uuid::parse_str(id)
        .map(PointId::Uuid)
        .map_err(|_| StoreError::Engine(format!("chunk id {id} is not a UUID")))
}

fn point_id_text(id: PointId) -> String {
    match id {
        PointId::Uuid(u) => u.to_string(),
        PointId::NumId(n) => n.to_string(),
    }
}

/// qdrant-edge's `flush` reports a failed WAL or segment write by panicking: turn that into an
/// error, so a write that may not be durable is never taken for one that is.
fn flush_shard(space: &str, shard: &EdgeShard) -> Result<()> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| shard.flush())).map_err(|panic| {
        StoreError::Flush {
            space: space.to_string(),
            reason: crate::fault::panic_text(&*panic),
        }
    })
}

fn json_path(key: &str) -> JsonPath {
    JsonPath::try_from(key).expect("payload keys are plain identifiers")
}

fn keyword(key: &str, value: &str) -> Condition {
    Condition::Field(FieldCondition::new_match(
        json_path(key),
        Match::from(value.to_string()),
    ))
}

fn build_filter(filter: &SearchFilter) -> Option<Filter> {
    let mut must = Vec::new();
    if let Some(source) = &filter.source_id {
        must.push(keyword("source_id", source));
    }
    if !filter.modalities.is_empty() {
        must.push(Condition::Field(FieldCondition::new_match(
            json_path("modality"),
            Match::from(filter.modalities.clone()),
        )));
    }
    if must.is_empty() {
        None
    } else {
        Some(Filter {
            must: Some(must),
            ..Default::default()
        })
    }
}

impl VectorStore for EdgeStore {
    fn ensure_space<'a>(&'a self, space: &'a SpaceSpec) -> BoxFuture<'a, Result<()>> {
        let this = self.clone();
        let space = space.clone();
        blocking(move || this.create_space(&space)).boxed()
    }

    fn upsert<'a>(&'a self, space: &'a str, points: Vec<VectorPoint>) -> BoxFuture<'a, Result<()>> {
        async move {
            let target = self
                .space(space)
                .ok_or_else(|| StoreError::UnknownSpace(space.to_string()))?;
            let space_name = space.to_string();
            blocking(move || {
                let mut batch = Vec::with_capacity(points.len());
                for mut point in points {
                    let vector =
                        match point.take_vectors(&space_name, target.dims, target.multivector)? {
                            StoredVectors::Multi(all) => Vector::new_multi(all).map_err(engine)?,
                            StoredVectors::Dense(v) => Vector::new_dense(v),
                        };
                    let vectors = NamedVectors::default().add_vector(VECTOR_NAME, vector);
                    batch.push(
                        PointStruct::new(point_id(&point.id)?, vectors, point.payload).into(),
                    );
                }
                if batch.is_empty() {
                    return Ok(());
                }
                target
                    .shard
                    .update(UpdateOperation::PointOperation(
                        PointOperations::UpsertPoints(PointInsertOperations::PointsList(batch)),
                    ))
                    .map_err(engine)
            })
            .await
        }
        .boxed()
    }

    fn delete_source<'a>(&'a self, source_id: &'a str) -> BoxFuture<'a, Result<()>> {
        let spaces: Vec<Arc<Space>> = self
            .spaces
            .lock()
            .expect("space map lock")
            .values()
            .cloned()
            .collect();
        let source_id = source_id.to_string();
        blocking(move || {
            for space in spaces {
                let filter = Filter {
                    must: Some(vec![keyword("source_id", &source_id)]),
                    ..Default::default()
                };
                space
                    .shard
                    .update(UpdateOperation::PointOperation(
                        PointOperations::DeletePointsByFilter(filter),
                    ))
                    .map_err(engine)?;
            }
            Ok(())
        })
        .boxed()
    }

    fn search<'a>(
        &'a self,
        space: &'a str,
        vector: Vec<f32>,
        limit: usize,
        filter: SearchFilter,
    ) -> BoxFuture<'a, Result<Vec<VectorHit>>> {
        async move {
            let Some(target) = self.space(space) else {
                return Ok(Vec::new());
            };
            if vector.len() != target.dims {
                return Err(StoreError::Dimensions {
                    space: space.to_string(),
                    expected: target.dims,
                    got: vector.len(),
                });
            }
            blocking(move || {
                // A multivector space takes the query as a one-vector multivector: its score
                // against a point is then the best of the point's vectors.
                let query = if target.multivector {
                    Vector::new_multi(vec![vector]).map_err(engine)?
                } else {
                    Vector::new_dense(vector)
                };
                let request = SearchRequest {
                    query: QueryEnum::Nearest(NamedQuery {
                        query: query.into(),
                        using: Some(VECTOR_NAME.into()),
                    }),
                    filter: build_filter(&filter),
                    params: None,
                    limit,
                    offset: 0,
                    with_payload: Some(WithPayloadInterface::Bool(false)),
                    with_vector: None,
                    score_threshold: None,
                };
                let points = target.shard.search(request).map_err(engine)?;
                Ok(points
                    .into_iter()
                    .map(|p| VectorHit {
                        id: point_id_text(p.id),
                        score: p.score,
                    })
                    .collect())
            })
            .await
        }
        .boxed()
    }

    fn count<'a>(&'a self, space: &'a str) -> BoxFuture<'a, Result<usize>> {
        let target = self.space(space);
        blocking(move || match target {
            None => Ok(0),
            Some(t) => t
                .shard
                .count(CountRequest {
                    filter: None,
                    exact: true,
                })
                .map_err(engine),
        })
        .boxed()
    }

    fn space_names(&self) -> BoxFuture<'_, Result<Vec<String>>> {
        let names = self.names();
        async move { Ok(names) }.boxed()
    }

    fn points<'a>(
        &'a self,
        space: &'a str,
        ids: Vec<String>,
    ) -> BoxFuture<'a, Result<Vec<VectorPoint>>> {
        let target = self.space(space);
        let space = space.to_string();
        blocking(move || {
            let Some(target) = target else {
                return Ok(Vec::new());
            };
            let point_ids = ids
                .iter()
                .map(|i| point_id(i))
                .collect::<Result<Vec<_>>>()?;
            let records = target
                .shard
                .retrieve(
                    &point_ids,
                    Some(WithPayloadInterface::Bool(true)),
                    Some(WithVector::Bool(true)),
                )
                .map_err(engine)?;
            records
                .into_iter()
                .map(|r| {
                    let id = point_id_text(r.id);
                    let vector = match r.vector {
                        Some(VectorStructInternal::Named(mut named)) => named.remove(VECTOR_NAME),
                        _ => None,
                    };
                    let (vector, parts) = match vector {
                        Some(VectorInternal::Dense(v)) => (v, Vec::new()),
                        Some(VectorInternal::MultiDense(m)) => {
                            let mut all = m.into_multi_vectors().into_iter();
                            (all.next().unwrap_or_default(), all.collect())
                        }
                        _ => {
                            return Err(StoreError::Engine(format!(
                                "point {id} in space {space} has no {VECTOR_NAME:?} vector"
                            )))
                        }
                    };
                    let payload = r
                        .payload
                        .map(|p| serde_json::Value::Object(p.0))
                        .unwrap_or_else(|| serde_json::json!({}));
                    Ok(VectorPoint {
                        id,
                        vector,
                        parts,
                        payload,
                    })
                })
                .collect()
        })
        .boxed()
    }

    fn point_ids<'a>(&'a self, space: &'a str) -> BoxFuture<'a, Result<Vec<String>>> {
        let target = self.space(space);
        blocking(move || {
            let Some(target) = target else {
                return Ok(Vec::new());
            };
            let mut ids = Vec::new();
            let mut offset = None;
            loop {
                let (records, next) = target
                    .shard
                    .scroll(ScrollRequest {
                        offset,
                        limit: Some(1000),
                        filter: None,
                        with_payload: Some(WithPayloadInterface::Bool(false)),
                        with_vector: WithVector::Bool(false),
                        order_by: None,
                    })
                    .map_err(engine)?;
                ids.extend(records.into_iter().map(|r| point_id_text(r.id)));
                match next {
                    Some(n) => offset = Some(n),
                    None => break,
                }
            }
            Ok(ids)
        })
        .boxed()
    }

    fn delete_points<'a>(&'a self, space: &'a str, ids: Vec<String>) -> BoxFuture<'a, Result<()>> {
        let target = self.space(space);
        blocking(move || {
            let Some(target) = target else {
                return Ok(());
            };
            let ids = ids
                .iter()
                .map(|i| point_id(i))
                .collect::<Result<Vec<_>>>()?;
            if ids.is_empty() {
                return Ok(());
            }
            target
                .shard
                .update(UpdateOperation::PointOperation(
                    PointOperations::DeletePoints { ids },
                ))
                .map_err(engine)
        })
        .boxed()
    }

    fn flush(&self) -> BoxFuture<'_, Result<()>> {
        let spaces: Vec<(String, Arc<Space>)> = self
            .spaces
            .lock()
            .expect("space map lock")
            .iter()
            .map(|(n, s)| (n.clone(), s.clone()))
            .collect();
        blocking(move || {
            for (name, space) in spaces {
                flush_shard(&name, &space.shard)?;
            }
            Ok(())
        })
        .boxed()
    }

    fn optimize(&self) -> BoxFuture<'_, Result<()>> {
        let spaces: Vec<(String, Arc<Space>)> = self
            .spaces
            .lock()
            .expect("space map lock")
            .iter()
            .map(|(n, s)| (n.clone(), s.clone()))
            .collect();
        blocking(move || {
            for (name, space) in spaces {
                space.shard.optimize().map_err(engine)?;
                flush_shard(&name, &space.shard)?;
            }
            Ok(())
        })
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn unit(dims: usize, hot: usize) -> Vec<f32> {
        let mut v = vec![0.01; dims];
        v[hot] = 1.0;
        v
    }

    #[tokio::test]
    async fn upsert_search_delete_and_reload() {
        let dir = tempfile::tempdir().unwrap();
        let store = EdgeStore::open(dir.path()).unwrap();
        let space = SpaceSpec {
            name: "text/test/8".into(),
            dims: 8,
            multivector: false,
        };
        store.ensure_space(&space).await.unwrap();
        store.ensure_space(&space).await.unwrap();
        let ids: Vec<String> = (0..4)
            .map(|i| uuid::Uuid::from_u128(i as u128 + 1).to_string())
            .collect();
        let points = ids
            .iter()
            .enumerate()
            .map(|(i, id)| VectorPoint {
                id: id.clone(),
                vector: unit(8, i),
                parts: Vec::new(),
                payload: json!({"source_id": if i < 2 { "a" } else { "b" }, "modality": "text"}),
            })
            .collect();
        store.upsert(&space.name, points).await.unwrap();
        // Upserting the same id again replaces, never duplicates.
        store
            .upsert(
                &space.name,
                vec![VectorPoint {
                    id: ids[0].clone(),
                    vector: unit(8, 0),
                    parts: Vec::new(),
                    payload: json!({"source_id": "a", "modality": "text"}),
                }],
            )
            .await
            .unwrap();
        assert_eq!(store.count(&space.name).await.unwrap(), 4);

        let hits = store
            .search(&space.name, unit(8, 2), 2, SearchFilter::default())
            .await
            .unwrap();
        assert_eq!(hits[0].id, ids[2]);
        let filtered = store
            .search(
                &space.name,
                unit(8, 2),
                4,
                SearchFilter {
                    source_id: Some("a".into()),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert!(filtered.iter().all(|h| h.id == ids[0] || h.id == ids[1]));

        store.delete_source("a").await.unwrap();
        assert_eq!(store.count(&space.name).await.unwrap(), 2);
        store.optimize().await.unwrap();
        store.flush().await.unwrap();
        drop(store);

        let reopened = EdgeStore::open(dir.path()).unwrap();
        assert_eq!(reopened.names(), vec![space.name.clone()]);
        assert_eq!(reopened.count(&space.name).await.unwrap(), 2);
        let wrong = SpaceSpec {
            name: space.name.clone(),
            dims: 4,
            multivector: false,
        };
        assert!(reopened.ensure_space(&wrong).await.is_err());
        let other_layout = SpaceSpec {
            multivector: true,
            ..space.clone()
        };
        assert!(matches!(
            reopened.ensure_space(&other_layout).await,
            Err(StoreError::Layout { .. })
        ));
        // A one-vector space refuses sentence vectors instead of dropping them.
        let refused = reopened
            .upsert(
                &space.name,
                vec![VectorPoint {
                    id: ids[3].clone(),
                    vector: unit(8, 3),
                    parts: vec![unit(8, 4)],
                    payload: json!({"source_id": "b", "modality": "text"}),
                }],
            )
            .await;
        assert!(matches!(refused, Err(StoreError::NotMultivector { .. })));
    }

    /// A multivector point scores as the best of its vectors: a point whose own vector points
    /// elsewhere is still found first through one of its parts, and outranks a point that
    /// matches only moderately. The layout survives a reload.
    #[tokio::test]
    async fn multivector_points_score_by_their_best_vector() {
        let dir = tempfile::tempdir().unwrap();
        let store = EdgeStore::open(dir.path()).unwrap();
        let space = SpaceSpec {
            name: "text/test/8/sentences".into(),
            dims: 8,
            multivector: true,
        };
        store.ensure_space(&space).await.unwrap();
        let a = uuid::Uuid::from_u128(1).to_string();
        let b = uuid::Uuid::from_u128(2).to_string();
        let mut moderate = unit(8, 5);
        moderate[6] = 0.9;
        let points = vec![
            VectorPoint {
                id: a.clone(),
                vector: unit(8, 0),
                parts: vec![unit(8, 1), unit(8, 6)],
                payload: json!({"source_id": "a", "modality": "text"}),
            },
            VectorPoint {
                id: b.clone(),
                vector: moderate,
                parts: Vec::new(),
                payload: json!({"source_id": "b", "modality": "text"}),
            },
        ];
        store.upsert(&space.name, points).await.unwrap();
        store.optimize().await.unwrap();
        store.flush().await.unwrap();
        drop(store);

        let store = EdgeStore::open(dir.path()).unwrap();
        assert_eq!(store.count(&space.name).await.unwrap(), 2);
        let hits = store
            .search(&space.name, unit(8, 6), 2, SearchFilter::default())
            .await
            .unwrap();
        let ids: Vec<&str> = hits.iter().map(|h| h.id.as_str()).collect();
        assert_eq!(ids, [a.as_str(), b.as_str()]);
        // The best part's cosine (an identical vector: 1), not a mean over the point's
        // vectors (about 0.35 here, below the other point's 0.67).
        assert!((hits[0].score - 1.0).abs() < 1e-4, "{}", hits[0].score);
        assert!(hits[1].score < 0.7, "{}", hits[1].score);
        store.delete_source("a").await.unwrap();
        assert_eq!(store.count(&space.name).await.unwrap(), 1);
    }
}
