//! Vectors in a Qdrant server or cluster through `qdrant-client` (gRPC): one collection per
//! embedding space, named `<prefix>--<space>` (the space name with the characters Qdrant
//! refuses in collection names percent-encoded, so it reads back exactly), each with one named
//! dense vector (`dense`, cosine; multivector `max_sim` for sentence-vector spaces), keyword
//! indexes on `source_id` and `modality`, and the sharding, replication, write consistency,
//! on-disk and quantization settings of `[backend.store]`. Nothing is kept on the node: a
//! second API server pointed at the same cluster sees the same spaces.
//!
//! Upserts go in batches and are retried on transient errors (unavailable, deadline, resource
//! exhausted) with backoff; every write waits for the server to apply it (`wait = true`), so
//! `flush` has nothing left to do and a completed call is as durable as the cluster makes it.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use qdrant_client::qdrant::{
    point_id::PointIdOptions, vector_output::Vector as OutputVector, vectors_config::Config,
    Condition, CountPointsBuilder, CreateCollectionBuilder, CreateFieldIndexCollectionBuilder,
    DeletePointsBuilder, Distance, FieldType, Filter, GetPointsBuilder, MultiVectorComparator,
    MultiVectorConfigBuilder, PointId, PointStruct, PointsIdsList, QueryPointsBuilder,
    ScalarQuantizationBuilder, ScrollPointsBuilder, UpsertPointsBuilder, VectorParamsBuilder,
    VectorsConfigBuilder, WriteOrdering, WriteOrderingType,
};
use qdrant_client::{Qdrant, QdrantError};

use super::{
    Result, SearchFilter, SpaceSpec, StoreError, StoredVectors, VectorHit, VectorPoint, VectorStore,
};
use crate::config::QdrantSettings;

/// The dense vector's name inside each space's collection.
const VECTOR_NAME: &str = "dense";

/// A connection to a Qdrant server or cluster with Mosaic's collection settings.
#[derive(Clone)]
pub struct QdrantConn {
    client: std::sync::Arc<Qdrant>,
    pub settings: QdrantSettings,
}

/// Whether an error is worth retrying: the server is (briefly) away or overloaded.
fn transient(e: &QdrantError) -> bool {
    use tonic::Code;
    match e {
        QdrantError::ResourceExhaustedError { .. } => true,
        QdrantError::ResponseError { status } => matches!(
            status.code(),
            Code::Unavailable | Code::DeadlineExceeded | Code::Aborted | Code::ResourceExhausted
        ),
        _ => false,
    }
}

impl QdrantConn {
    /// Connects and checks that the server answers (and takes the API key) within the
    /// configured timeout; every failure is one [`StoreError`] naming the URL.
    pub async fn connect(settings: &QdrantSettings) -> Result<Self> {
        let timeout = Duration::from_secs(settings.timeout_secs.max(1));
        let client = Qdrant::from_url(&settings.url)
            .api_key(settings.api_key.clone())
            .timeout(timeout)
            .connect_timeout(timeout)
            .skip_compatibility_check()
            .build()
            .map_err(|e| StoreError::Unreachable {
                url: settings.url.clone(),
                reason: e.to_string(),
            })?;
        let conn = Self {
            client: std::sync::Arc::new(client),
            settings: settings.clone(),
        };
        match tokio::time::timeout(timeout, conn.client.list_collections()).await {
            Err(_) => Err(StoreError::Unreachable {
                url: settings.url.clone(),
                reason: format!("no answer within {} s", timeout.as_secs()),
            }),
            Ok(Err(QdrantError::ResponseError { status }))
                if status.code() == tonic::Code::Unauthenticated
                    || status.code() == tonic::Code::PermissionDenied =>
            {
                Err(StoreError::Unauthorized {
                    url: settings.url.clone(),
                    reason: status.message().to_string(),
                })
            }
            Ok(Err(e)) => Err(StoreError::Unreachable {
                url: settings.url.clone(),
                reason: e.to_string(),
            }),
            Ok(Ok(_)) => Ok(conn),
        }
    }

    pub fn client(&self) -> &Qdrant {
        &self.client
    }

    /// Runs `call`, retrying transient failures with doubling backoff.
    pub async fn retry<T, F, Fut>(&self, what: &str, mut call: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = std::result::Result<T, QdrantError>>,
    {
        let mut delay = Duration::from_millis(200);
        let mut attempt = 0;
        loop {
            match call().await {
                Ok(v) => return Ok(v),
                Err(e) if transient(&e) && attempt < self.settings.retries => {
                    attempt += 1;
                    tracing::warn!(what, attempt, error = %e, "Qdrant call failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
                Err(e) => return Err(self.error(what, e)),
            }
        }
    }

    fn error(&self, what: &str, e: QdrantError) -> StoreError {
        let url = self.settings.url.clone();
        match &e {
            QdrantError::ResponseError { status }
                if matches!(
                    status.code(),
                    tonic::Code::Unauthenticated | tonic::Code::PermissionDenied
                ) =>
            {
                StoreError::Unauthorized {
                    url,
                    reason: status.message().to_string(),
                }
            }
            e if transient(e) => StoreError::Unreachable {
                url,
                reason: format!("{what}: {e}"),
            },
            _ => StoreError::Engine(format!("Qdrant at {url}, {what}: {e}")),
        }
    }

    /// The collection of a space.
    pub fn collection(&self, space: &str) -> String {
        let mut name = format!("{}--", self.settings.collection_prefix);
        for c in space.chars() {
            if "<>:\"/\\|?*%".contains(c) || c.is_control() {
                name.push_str(&format!("%{:02X}", c as u32));
            } else {
                name.push(c);
            }
        }
        name
    }

    /// The space of a collection name made by [`QdrantConn::collection`], if it is one.
    fn space_of(&self, collection: &str) -> Option<String> {
        let rest = collection.strip_prefix(&format!("{}--", self.settings.collection_prefix))?;
        let mut out = String::new();
        let mut chars = rest.chars();
        while let Some(c) = chars.next() {
            if c == '%' {
                let hex: String = chars.by_ref().take(2).collect();
                out.push(char::from(u8::from_str_radix(&hex, 16).ok()?));
            } else {
                out.push(c);
            }
        }
        Some(out)
    }

    /// Creates keyword payload indexes (idempotent on the server).
    pub async fn keyword_indexes(&self, collection: &str, fields: &[&str]) -> Result<()> {
        for field in fields {
            let request =
                CreateFieldIndexCollectionBuilder::new(collection, *field, FieldType::Keyword)
                    .wait(true);
            self.retry("creating a payload index", || {
                self.client.create_field_index(request.clone())
            })
            .await?;
        }
        Ok(())
    }

    /// The collection settings shared by every collection Mosaic creates.
    pub fn create_builder(&self, collection: &str) -> CreateCollectionBuilder {
        let s = &self.settings;
        CreateCollectionBuilder::new(collection)
            .shard_number(s.shard_number.max(1))
            .replication_factor(s.replication_factor.max(1))
            .write_consistency_factor(s.write_consistency_factor.max(1))
            .on_disk_payload(s.on_disk)
    }
}

/// Dense vectors in Qdrant, one collection per space.
#[derive(Clone)]
pub struct QdrantStore {
    conn: QdrantConn,
    /// Layouts read once per process (a space's layout never changes once created).
    layouts: std::sync::Arc<std::sync::Mutex<HashMap<String, Layout>>>,
}

/// What a space's collection was created with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layout {
    dims: usize,
    multivector: bool,
}

fn point_id(id: &str) -> Result<PointId> {
    uuid::Uuid::parse_str(id)
        .map(|u| PointId::from(u.to_string()))
        .map_err(|_| StoreError::Engine(format!("chunk id {id} is not a UUID")))
}

/// A point id as the catalog writes it.
pub fn point_id_text(id: Option<PointId>) -> String {
    match id.and_then(|p| p.point_id_options) {
        Some(PointIdOptions::Uuid(u)) => u,
        Some(PointIdOptions::Num(n)) => n.to_string(),
        None => String::new(),
    }
}

fn filter(filter: &SearchFilter) -> Option<Filter> {
    let mut must = Vec::new();
    if let Some(source) = &filter.source_id {
        must.push(Condition::matches("source_id", source.clone()));
    }
    if !filter.modalities.is_empty() {
        must.push(Condition::matches("modality", filter.modalities.clone()));
    }
    (!must.is_empty()).then(|| Filter::must(must))
}

impl QdrantStore {
    pub fn new(conn: QdrantConn) -> Self {
        Self {
            conn,
            layouts: Default::default(),
        }
    }

    /// The layout of a space's collection, or `None` when it does not exist.
    async fn layout(&self, space: &str) -> Result<Option<Layout>> {
        if let Some(known) = self.layouts.lock().expect("layout cache").get(space) {
            return Ok(Some(*known));
        }
        let layout = self.read_layout(space).await?;
        if let Some(l) = layout {
            self.layouts
                .lock()
                .expect("layout cache")
                .insert(space.to_string(), l);
        }
        Ok(layout)
    }

    async fn read_layout(&self, space: &str) -> Result<Option<Layout>> {
        let collection = self.conn.collection(space);
        let exists = self
            .conn
            .retry("checking a collection", || {
                self.conn.client.collection_exists(collection.clone())
            })
            .await?;
        if !exists {
            return Ok(None);
        }
        let info = self
            .conn
            .retry("reading a collection", || {
                self.conn.client.collection_info(collection.clone())
            })
            .await?;
        let params = info
            .result
            .and_then(|r| r.config)
            .and_then(|c| c.params)
            .and_then(|p| p.vectors_config)
            .and_then(|v| v.config)
            .and_then(|c| match c {
                Config::ParamsMap(map) => map.map.get(VECTOR_NAME).cloned(),
                Config::Params(_) => None,
            })
            .ok_or_else(|| {
                StoreError::Engine(format!(
                    "collection {collection} exists without a {VECTOR_NAME:?} vector: not one of Mosaic's"
                ))
            })?;
        Ok(Some(Layout {
            dims: params.size as usize,
            multivector: params.multivector_config.is_some(),
        }))
    }

    async fn create(&self, spec: &SpaceSpec) -> Result<()> {
        if let Some(existing) = self.layout(&spec.name).await? {
            return spec.check_existing(existing.dims, existing.multivector);
        }
        let s = &self.conn.settings;
        let mut params =
            VectorParamsBuilder::new(spec.dims as u64, Distance::Cosine).on_disk(s.on_disk);
        if spec.multivector {
            params = params
                .multivector_config(MultiVectorConfigBuilder::new(MultiVectorComparator::MaxSim));
        }
        if s.scalar_quantization {
            params =
                params.quantization_config(ScalarQuantizationBuilder::default().always_ram(true));
        }
        let mut vectors = VectorsConfigBuilder::default();
        vectors.add_named_vector_params(VECTOR_NAME, params);
        let collection = self.conn.collection(&spec.name);
        let request = self
            .conn
            .create_builder(&collection)
            .vectors_config(vectors);
        let created = self
            .conn
            .retry("creating a collection", || {
                self.conn.client.create_collection(request.clone())
            })
            .await;
        if let Err(e) = created {
            // Another server or worker may have created it at the same moment.
            if self.layout(&spec.name).await?.is_none() {
                return Err(e);
            }
            return Box::pin(self.create(spec)).await;
        }
        self.conn
            .keyword_indexes(&collection, &["source_id", "modality"])
            .await
    }

    async fn space_collections(&self) -> Result<Vec<(String, String)>> {
        let list = self
            .conn
            .retry("listing collections", || {
                self.conn.client.list_collections()
            })
            .await?;
        let mut spaces: Vec<(String, String)> = list
            .collections
            .into_iter()
            .filter_map(|c| self.conn.space_of(&c.name).map(|s| (s, c.name)))
            .collect();
        spaces.sort();
        Ok(spaces)
    }
}

impl VectorStore for QdrantStore {
    fn ensure_space<'a>(&'a self, space: &'a SpaceSpec) -> BoxFuture<'a, Result<()>> {
        self.create(space).boxed()
    }

    fn upsert<'a>(&'a self, space: &'a str, points: Vec<VectorPoint>) -> BoxFuture<'a, Result<()>> {
        async move {
            if points.is_empty() {
                return Ok(());
            }
            let layout = self
                .layout(space)
                .await?
                .ok_or_else(|| StoreError::UnknownSpace(space.to_string()))?;
            let mut batch = Vec::with_capacity(points.len());
            for mut point in points {
                let vector: qdrant_client::qdrant::Vector =
                    match point.take_vectors(space, layout.dims, layout.multivector)? {
                        StoredVectors::Multi(all) => all.into(),
                        StoredVectors::Dense(v) => v.into(),
                    };
                let payload = match point.payload {
                    serde_json::Value::Object(map) => map,
                    other => {
                        return Err(StoreError::Engine(format!(
                            "point {} has a payload that is not an object: {other}",
                            point.id
                        )))
                    }
                };
                let vectors = HashMap::from([(VECTOR_NAME.to_string(), vector)]);
                batch.push(PointStruct::new(point_id(&point.id)?, vectors, payload));
            }
            let collection = self.conn.collection(space);
            for part in batch.chunks(self.conn.settings.upsert_batch.max(1)) {
                let request = UpsertPointsBuilder::new(collection.clone(), part.to_vec())
                    .wait(true)
                    .ordering(WriteOrdering {
                        r#type: WriteOrderingType::Medium as i32,
                    });
                self.conn
                    .retry("upserting points", || {
                        self.conn.client.upsert_points(request.clone())
                    })
                    .await?;
            }
            Ok(())
        }
        .boxed()
    }

    fn delete_source<'a>(&'a self, source_id: &'a str) -> BoxFuture<'a, Result<()>> {
        async move {
            for (_, collection) in self.space_collections().await? {
                let request = DeletePointsBuilder::new(collection)
                    .points(Filter::must([Condition::matches(
                        "source_id",
                        source_id.to_string(),
                    )]))
                    .wait(true);
                self.conn
                    .retry("deleting a source", || {
                        self.conn.client.delete_points(request.clone())
                    })
                    .await?;
            }
            Ok(())
        }
        .boxed()
    }

    fn search<'a>(
        &'a self,
        space: &'a str,
        vector: Vec<f32>,
        limit: usize,
        search_filter: SearchFilter,
    ) -> BoxFuture<'a, Result<Vec<VectorHit>>> {
        async move {
            let Some(layout) = self.layout(space).await? else {
                return Ok(Vec::new());
            };
            if vector.len() != layout.dims {
                return Err(StoreError::Dimensions {
                    space: space.to_string(),
                    expected: layout.dims,
                    got: vector.len(),
                });
            }
            // A multivector space takes the query as a one-vector multivector, as the
            // embedded store does: the score is then the best of the point's vectors.
            let query: qdrant_client::qdrant::Query = if layout.multivector {
                vec![vector].into()
            } else {
                vector.into()
            };
            let mut request = QueryPointsBuilder::new(self.conn.collection(space))
                .query(query)
                .using(VECTOR_NAME)
                .limit(limit as u64)
                .with_payload(false);
            if let Some(f) = filter(&search_filter) {
                request = request.filter(f);
            }
            let response = self
                .conn
                .retry("searching", || self.conn.client.query(request.clone()))
                .await?;
            Ok(response
                .result
                .into_iter()
                .map(|p| VectorHit {
                    id: point_id_text(p.id),
                    score: p.score,
                })
                .collect())
        }
        .boxed()
    }

    fn count<'a>(&'a self, space: &'a str) -> BoxFuture<'a, Result<usize>> {
        async move {
            if self.layout(space).await?.is_none() {
                return Ok(0);
            }
            let request = CountPointsBuilder::new(self.conn.collection(space)).exact(true);
            let response = self
                .conn
                .retry("counting points", || {
                    self.conn.client.count(request.clone())
                })
                .await?;
            Ok(response.result.map_or(0, |r| r.count as usize))
        }
        .boxed()
    }

    fn space_names(&self) -> BoxFuture<'_, Result<Vec<String>>> {
        async move {
            Ok(self
                .space_collections()
                .await?
                .into_iter()
                .map(|(space, _)| space)
                .collect())
        }
        .boxed()
    }

    fn points<'a>(
        &'a self,
        space: &'a str,
        ids: Vec<String>,
    ) -> BoxFuture<'a, Result<Vec<VectorPoint>>> {
        async move {
            if ids.is_empty() || self.layout(space).await?.is_none() {
                return Ok(Vec::new());
            }
            let point_ids = ids
                .iter()
                .map(|i| point_id(i))
                .collect::<Result<Vec<_>>>()?;
            let request = GetPointsBuilder::new(self.conn.collection(space), point_ids)
                .with_payload(true)
                .with_vectors(true);
            let response = self
                .conn
                .retry("reading points", || {
                    self.conn.client.get_points(request.clone())
                })
                .await?;
            let mut by_id: HashMap<String, VectorPoint> = HashMap::new();
            for record in response.result {
                let id = point_id_text(record.id);
                let vector = record
                    .vectors
                    .and_then(|v| v.get_vector_by_name(VECTOR_NAME))
                    .ok_or_else(|| {
                        StoreError::Engine(format!("point {id} in {space} has no dense vector"))
                    })?;
                let (vector, parts) = match vector {
                    OutputVector::Dense(d) => (d.data, Vec::new()),
                    OutputVector::MultiDense(m) => {
                        let mut all = m.vectors.into_iter().map(|v| v.data);
                        (all.next().unwrap_or_default(), all.collect())
                    }
                    OutputVector::Sparse(_) => {
                        return Err(StoreError::Engine(format!(
                            "point {id} in {space} holds a sparse vector"
                        )))
                    }
                };
                let payload: serde_json::Map<String, serde_json::Value> = record
                    .payload
                    .into_iter()
                    .map(|(k, v)| (k, v.into_json()))
                    .collect();
                by_id.insert(
                    id.clone(),
                    VectorPoint {
                        id,
                        vector,
                        parts,
                        payload: serde_json::Value::Object(payload),
                    },
                );
            }
            Ok(ids.iter().filter_map(|i| by_id.remove(i)).collect())
        }
        .boxed()
    }

    fn point_ids<'a>(&'a self, space: &'a str) -> BoxFuture<'a, Result<Vec<String>>> {
        async move {
            if self.layout(space).await?.is_none() {
                return Ok(Vec::new());
            }
            scroll_ids(&self.conn, &self.conn.collection(space), None).await
        }
        .boxed()
    }

    fn delete_points<'a>(&'a self, space: &'a str, ids: Vec<String>) -> BoxFuture<'a, Result<()>> {
        async move {
            if ids.is_empty() || self.layout(space).await?.is_none() {
                return Ok(());
            }
            let ids = ids
                .iter()
                .map(|i| point_id(i))
                .collect::<Result<Vec<_>>>()?;
            let request = DeletePointsBuilder::new(self.conn.collection(space))
                .points(PointsIdsList { ids })
                .wait(true);
            self.conn
                .retry("deleting points", || {
                    self.conn.client.delete_points(request.clone())
                })
                .await?;
            Ok(())
        }
        .boxed()
    }

    fn flush(&self) -> BoxFuture<'_, Result<()>> {
        // Every write waited for the cluster to apply it.
        async { Ok(()) }.boxed()
    }

    fn optimize(&self) -> BoxFuture<'_, Result<()>> {
        // Qdrant's optimizers index segments in the background as they fill.
        async { Ok(()) }.boxed()
    }
}

/// Every point id of a collection (optionally filtered), scrolled 1,000 at a time.
pub async fn scroll_ids(
    conn: &QdrantConn,
    collection: &str,
    only: Option<Filter>,
) -> Result<Vec<String>> {
    let mut ids = Vec::new();
    let mut offset: Option<PointId> = None;
    loop {
        let mut request = ScrollPointsBuilder::new(collection)
            .limit(1000)
            .with_payload(false)
            .with_vectors(false);
        if let Some(o) = offset.clone() {
            request = request.offset(o);
        }
        if let Some(f) = only.clone() {
            request = request.filter(f);
        }
        let response = conn
            .retry("listing points", || conn.client.scroll(request.clone()))
            .await?;
        ids.extend(response.result.into_iter().map(|p| point_id_text(p.id)));
        match response.next_page_offset {
            Some(next) => offset = Some(next),
            None => return Ok(ids),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collection_names_read_back_as_their_space() {
        let settings = QdrantSettings {
            collection_prefix: "mosaic".into(),
            ..QdrantSettings::default()
        };
        let conn = QdrantConn {
            client: std::sync::Arc::new(Qdrant::from_url("http://127.0.0.1:1").build().unwrap()),
            settings,
        };
        for space in [
            "text/sentence-transformers/all-MiniLM-L6-v2/384",
            "image/openai/clip-vit-base-patch32/512",
            "text/odd:name%with*chars?/8/sentences",
        ] {
            let collection = conn.collection(space);
            assert!(!collection.contains(['/', ':', '*', '?']), "{collection}");
            assert_eq!(conn.space_of(&collection).as_deref(), Some(space));
        }
        assert_eq!(conn.space_of("other--x"), None);
        assert_eq!(conn.space_of("mosaic__lexical"), None);
    }
}
