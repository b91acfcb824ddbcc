//! One simulated Envoy: an ADS stream that subscribes and acknowledges as Envoy does.
//!
//! - The first request carries the node (`id` unique, `cluster` = the fleet).
//! - CDS and LDS are wildcard subscriptions; EDS follows the clusters CDS returned and RDS the
//!   route configurations the listeners name (read from their HTTP connection managers).
//! - Every response is ACKed with its nonce: SotW repeats `version_info` and the names it
//!   wants; delta sends `response_nonce` and, in separate requests, the subscribe/unsubscribe
//!   differences, before the ACK of the response that caused them (as Envoy does).
//!
//! A stream keeps only what it needs to tell whether it reached a target: SotW the last
//! `version_info` per type, delta the version of each resource it holds.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use envoy_types::pb::envoy::config::core::v3::{Node, node::UserAgentVersionType};
use envoy_types::pb::envoy::config::listener::v3::{Listener, filter};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, http_connection_manager::RouteSpecifier,
};
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use envoy_types::pb::google::protobuf::Any;
use flotilla::cache::ResourceType;
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::Channel;

use crate::expect::version_number;
use crate::shared::Shared;

/// Responses larger than tonic's 4 MiB default happen with big configs (SotW CDS is complete).
const MAX_MESSAGE: usize = 256 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Mode {
    Sotw,
    Delta,
}

/// Who a stream pretends to be.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    pub(crate) node_id: String,
    pub(crate) fleet: usize,
    pub(crate) fleet_name: String,
}

/// Runs one stream until flotilla closes it; errors are counted, not fatal to the run.
pub(crate) async fn run(channel: Channel, who: Identity, mode: Mode, shared: Arc<Shared>) {
    let result = match mode {
        Mode::Sotw => sotw(channel, &who, &shared).await,
        Mode::Delta => delta(channel, &who, &shared).await,
    };
    if let Err(e) = result {
        let error = format!("{e:#}");
        tracing::warn!(node = %who.node_id, %error, "stream failed");
        shared.stream_failed(error);
    }
}

fn node(who: &Identity) -> Node {
    Node {
        id: who.node_id.clone(),
        cluster: who.fleet_name.clone(),
        user_agent_name: "flotilla-loadgen".to_string(),
        user_agent_version_type: Some(UserAgentVersionType::UserAgentVersion(
            env!("CARGO_PKG_VERSION").to_string(),
        )),
        ..Default::default()
    }
}

/// The first field of Cluster, ClusterLoadAssignment, Listener and RouteConfiguration is
/// their name: decoding only that field skips the rest of the body (prost skips unknown
/// fields), which keeps the load generator cheap next to the server it measures.
#[derive(Clone, PartialEq, prost::Message)]
struct Named {
    #[prost(string, tag = "1")]
    name: String,
}

fn body_name(any: &Any) -> Result<String> {
    Ok(Named::decode(any.value.as_slice())?.name)
}

/// The route configurations a listener's HTTP connection managers fetch by RDS.
fn route_names(any: &Any) -> Result<Vec<String>> {
    let listener = Listener::decode(any.value.as_slice())?;
    let mut out = Vec::new();
    for chain in listener
        .filter_chains
        .iter()
        .chain(listener.default_filter_chain.iter())
    {
        for f in &chain.filters {
            let Some(filter::ConfigType::TypedConfig(typed)) = &f.config_type else {
                continue;
            };
            if !typed.type_url.ends_with("HttpConnectionManager") {
                continue;
            }
            let hcm = HttpConnectionManager::decode(typed.value.as_slice())?;
            if let Some(RouteSpecifier::Rds(rds)) = hcm.route_specifier {
                out.push(rds.route_config_name);
            }
        }
    }
    Ok(out)
}

fn resource_type(type_url: &str) -> Result<ResourceType> {
    ResourceType::from_type_url(type_url).ok_or_else(|| anyhow!("unexpected type {type_url}"))
}

/// Indexes of `names` in the shared name table of type `t`.
fn indexes(shared: &Shared, t: ResourceType, names: &[String]) -> Result<BTreeSet<u32>> {
    names
        .iter()
        .map(|n| {
            shared
                .names
                .index(t, n)
                .with_context(|| format!("flotilla sent {t} {n:?}, which no config state has"))
        })
        .collect()
}

/// Records reaching the target of the current phase (once per phase).
fn check(shared: &Shared, next: &mut usize, holds: impl Fn(usize) -> bool) {
    let k = shared.epoch();
    if k >= *next && holds(k) {
        shared.reached(k);
        *next = k + 1;
    }
}

async fn sotw(channel: Channel, who: &Identity, shared: &Shared) -> Result<()> {
    let mut client = AggregatedDiscoveryServiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    let (tx, rx) = mpsc::unbounded_channel();
    let request = |t: ResourceType| DiscoveryRequest {
        type_url: t.type_url().to_string(),
        ..Default::default()
    };
    tx.send(DiscoveryRequest {
        node: Some(node(who)),
        ..request(ResourceType::Cluster)
    })?;
    tx.send(request(ResourceType::Listener))?;
    let mut responses = client
        .stream_aggregated_resources(UnboundedReceiverStream::new(rx))
        .await?
        .into_inner();
    let mut version: [String; ResourceType::COUNT] = Default::default();
    let mut nonce: [String; ResourceType::COUNT] = Default::default();
    // What EDS and RDS are subscribed to.
    let mut wanted: [BTreeSet<u32>; ResourceType::COUNT] = Default::default();
    let names_of = |t: ResourceType, set: &BTreeSet<u32>| -> Vec<String> {
        set.iter()
            .map(|i| shared.names.name(t, *i).to_string())
            .collect()
    };
    let mut next = 0;
    while let Some(resp) = responses.message().await? {
        let t = resource_type(&resp.type_url)?;
        shared
            .traffic
            .response(t, resp.resources.len(), resp.encoded_len());
        let dependent = match t {
            ResourceType::Cluster => {
                let names: Vec<String> = resp
                    .resources
                    .iter()
                    .map(body_name)
                    .collect::<Result<_>>()?;
                Some((
                    ResourceType::Endpoint,
                    indexes(shared, ResourceType::Endpoint, &names)?,
                ))
            }
            ResourceType::Listener => {
                let mut names = Vec::new();
                for r in &resp.resources {
                    names.extend(route_names(r)?);
                }
                Some((
                    ResourceType::Route,
                    indexes(shared, ResourceType::Route, &names)?,
                ))
            }
            _ => None,
        };
        if let Some((dep, set)) = dependent
            && set != wanted[dep.index()]
        {
            tx.send(DiscoveryRequest {
                version_info: version[dep.index()].clone(),
                resource_names: names_of(dep, &set),
                response_nonce: nonce[dep.index()].clone(),
                ..request(dep)
            })?;
            wanted[dep.index()] = set;
        }
        version[t.index()] = resp.version_info;
        nonce[t.index()] = resp.nonce;
        tx.send(DiscoveryRequest {
            version_info: version[t.index()].clone(),
            resource_names: names_of(t, &wanted[t.index()]),
            response_nonce: nonce[t.index()].clone(),
            ..request(t)
        })?;
        shared.traffic.ack();
        check(shared, &mut next, |k| {
            version == shared.targets[k].fleets[who.fleet].sotw
        });
    }
    Ok(())
}

async fn delta(channel: Channel, who: &Identity, shared: &Shared) -> Result<()> {
    let mut client = AggregatedDiscoveryServiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    let (tx, rx) = mpsc::unbounded_channel();
    let request = |t: ResourceType| DeltaDiscoveryRequest {
        type_url: t.type_url().to_string(),
        ..Default::default()
    };
    tx.send(DeltaDiscoveryRequest {
        node: Some(node(who)),
        ..request(ResourceType::Cluster)
    })?;
    tx.send(request(ResourceType::Listener))?;
    let mut responses = client
        .delta_aggregated_resources(UnboundedReceiverStream::new(rx))
        .await?
        .into_inner();
    let mut held: [Vec<u64>; ResourceType::COUNT] =
        ResourceType::ALL.map(|t| vec![0; shared.names.len(t)]);
    let mut wanted: [BTreeSet<u32>; ResourceType::COUNT] = Default::default();
    // Listener index → the route configurations it uses.
    let mut listener_routes: BTreeMap<u32, BTreeSet<u32>> = BTreeMap::new();
    let mut next = 0;
    while let Some(resp) = responses.message().await? {
        let t = resource_type(&resp.type_url)?;
        shared
            .traffic
            .response(t, resp.resources.len(), resp.encoded_len());
        for r in &resp.resources {
            let i = *indexes(shared, t, std::slice::from_ref(&r.name))?
                .first()
                .expect("one name, one index");
            held[t.index()][i as usize] = version_number(&r.version);
            if t == ResourceType::Listener {
                let body = r
                    .resource
                    .as_ref()
                    .context("delta resource without a body")?;
                listener_routes.insert(
                    i,
                    indexes(shared, ResourceType::Route, &route_names(body)?)?,
                );
            }
        }
        for name in &resp.removed_resources {
            if let Some(i) = shared.names.index(t, name) {
                held[t.index()][i as usize] = 0;
                listener_routes.remove(&i);
            }
        }
        let dependent = match t {
            ResourceType::Cluster => {
                let mut set = BTreeSet::new();
                for (i, v) in held[t.index()].iter().enumerate() {
                    if *v != 0 {
                        let name = shared.names.name(t, i as u32);
                        set.extend(shared.names.index(ResourceType::Endpoint, name));
                    }
                }
                Some((ResourceType::Endpoint, set))
            }
            ResourceType::Listener => Some((
                ResourceType::Route,
                listener_routes.values().flatten().copied().collect(),
            )),
            _ => None,
        };
        if let Some((dep, set)) = dependent
            && set != wanted[dep.index()]
        {
            let old = &wanted[dep.index()];
            let subscribe: Vec<u32> = set.difference(old).copied().collect();
            let unsubscribe: Vec<u32> = old.difference(&set).copied().collect();
            for i in &unsubscribe {
                held[dep.index()][*i as usize] = 0;
            }
            let names = |v: &[u32]| -> Vec<String> {
                v.iter()
                    .map(|i| shared.names.name(dep, *i).to_string())
                    .collect()
            };
            tx.send(DeltaDiscoveryRequest {
                resource_names_subscribe: names(&subscribe),
                resource_names_unsubscribe: names(&unsubscribe),
                ..request(dep)
            })?;
            wanted[dep.index()] = set;
        }
        tx.send(DeltaDiscoveryRequest {
            response_nonce: resp.nonce,
            ..request(t)
        })?;
        shared.traffic.ack();
        check(shared, &mut next, |k| {
            held == shared.targets[k].fleets[who.fleet].delta
        });
    }
    Ok(())
}
