//! The bucket operators, with each API's real semantics:
//!
//! - COSI: a `BucketClaim` either names an existing `Bucket` *object*
//!   (`existingBucketName`, brownfield) or asks its `BucketClass` for a new one, for which
//!   the controller creates a `Bucket` object (`<class><claim uid>`, the class's deletion
//!   policy copied into it). A `Bucket` object either names an existing cloud bucket
//!   (`existingBucketID`) or has the driver create one. Deleting the cluster deletes the
//!   cloud bucket when its `Bucket` object's `deletionPolicy` is `Delete` — which is
//!   changeable, unlike the class's.
//! - Crossplane `s3.aws.upbound.io` (v1, cluster-scoped) and `s3.aws.m.upbound.io` (v2,
//!   namespaced) `Bucket`: `crossplane.io/external-name` names the bucket; a v1
//!   `deletionPolicy: Orphan` keeps it; `managementPolicies` without `Delete` (or `*`)
//!   keeps it (v2 has no `deletionPolicy`); `[Observe]` never creates.
//! - ACK `s3.services.k8s.aws` `Bucket`: `spec.name` is the bucket; with
//!   `services.k8s.aws/adoption-policy: adopt` it adopts the bucket named by
//!   `adoption-fields` (which must exist); `deletion-policy: retain` keeps it.

use serde_json::{Value, json};

use super::{Api, Requeue, get, set_status, str_at};
use crate::Actor;
use crate::status::ApiError;

const COSI: &str = "objectstorage.k8s.io";

fn cosi() -> Actor {
    Actor::system("system:serviceaccount:cosi-system:objectstorage-controller")
}

fn crossplane() -> Actor {
    Actor::system("system:serviceaccount:crossplane-system:provider-aws-s3")
}

fn ack() -> Actor {
    Actor::system("system:serviceaccount:ack-system:ack-s3-controller")
}

fn pending(ready: bool) -> Requeue {
    if ready {
        Requeue::No
    } else {
        Requeue::After(super::RETRY)
    }
}

pub fn reconcile_claim(sim: &dyn Api, ns: &str, name: &str) -> Result<Requeue, ApiError> {
    let Some(claim) = get(sim, COSI, "bucketclaims", ns, name)? else {
        return Ok(Requeue::No);
    };
    let bound = str_at(&claim, "/status/bucketName")
        .map(|b| Ok::<_, ApiError>(get(sim, COSI, "buckets", "", b)?.map(|_| b.to_owned())))
        .transpose()?
        .flatten();
    let bucket_object = match (str_at(&claim, "/spec/existingBucketName"), bound) {
        // Brownfield: the claim names a Bucket object, not a cloud bucket.
        (Some(existing), _) => match get(sim, COSI, "buckets", "", existing)? {
            Some(b) => b,
            None => {
                let status = json!({"bucketReady": false,
                    "error": format!("Bucket {existing} not found")});
                set_status(sim, COSI, "bucketclaims", &claim, status, &cosi())?;
                return Ok(Requeue::After(super::RETRY));
            }
        },
        (None, Some(b)) => get(sim, COSI, "buckets", "", &b)?.unwrap_or(Value::Null),
        // Greenfield: a new Bucket object from the class.
        (None, None) => {
            let class = match str_at(&claim, "/spec/bucketClassName") {
                Some(c) => get(sim, COSI, "bucketclasses", "", c)?,
                None => None,
            };
            let Some(class) = class else {
                let status = json!({"bucketReady": false,
                    "error": "neither existingBucketName nor a known bucketClassName"});
                set_status(sim, COSI, "bucketclaims", &claim, status, &cosi())?;
                return Ok(Requeue::After(super::RETRY));
            };
            let class_name = str_at(&class, "/metadata/name").unwrap_or_default();
            let uid = str_at(&claim, "/metadata/uid").unwrap_or_default();
            let bucket = json!({
                "apiVersion": "objectstorage.k8s.io/v1alpha1", "kind": "Bucket",
                "metadata": {"name": format!("{class_name}{uid}")},
                "spec": {
                    "bucketClaim": {"name": name, "namespace": ns, "uid": uid},
                    "bucketClassName": class_name,
                    "driverName": class["driverName"],
                    "deletionPolicy": str_at(&class, "/deletionPolicy").unwrap_or("Retain"),
                    "parameters": class["parameters"],
                    "protocols": claim["spec"]["protocols"],
                },
            });
            sim.create(COSI, "buckets", "", bucket, &cosi())?
        }
    };
    let bucket_name = str_at(&bucket_object, "/metadata/name").unwrap_or_default();
    let ready = bucket_object.pointer("/status/bucketReady") == Some(&json!(true));
    let status = json!({"bucketReady": ready, "bucketName": bucket_name});
    set_status(sim, COSI, "bucketclaims", &claim, status, &cosi())?;
    Ok(pending(ready))
}

pub fn reconcile_cosi_bucket(sim: &dyn Api, name: &str) -> Result<Requeue, ApiError> {
    let Some(b) = get(sim, COSI, "buckets", "", name)? else {
        return Ok(Requeue::No);
    };
    let delete = str_at(&b, "/spec/deletionPolicy") == Some("Delete");
    let claim = match (
        str_at(&b, "/spec/bucketClaim/namespace"),
        str_at(&b, "/spec/bucketClaim/name"),
    ) {
        (Some(ns), Some(n)) => format!("{ns}/{n}"),
        _ => format!("Bucket {name}"),
    };
    let status = {
        let mut cloud = sim.cloud().lock();
        let id = match str_at(&b, "/spec/existingBucketID") {
            Some(existing) => cloud
                .buckets
                .contains_key(existing)
                .then(|| existing.to_owned()),
            None => {
                let id = str_at(&b, "/status/bucketID")
                    .filter(|id| cloud.buckets.contains_key(*id))
                    .map_or_else(|| name.to_owned(), str::to_owned);
                if !cloud.buckets.contains_key(&id) {
                    cloud.create_bucket(
                        &id,
                        "",
                        &format!(
                            "created by the COSI driver for Bucket {name} (no existingBucketID)"
                        ),
                    );
                }
                Some(id)
            }
        };
        match id {
            Some(id) => {
                if let Some(bucket) = cloud.buckets.get_mut(&id) {
                    bucket.managed_by = Some(claim);
                    bucket.delete_with_claim = delete;
                }
                json!({"bucketReady": true, "bucketID": id})
            }
            None => json!({"bucketReady": false, "bucketID": "",
                "error": format!("existing bucket {} not found", str_at(&b, "/spec/existingBucketID").unwrap_or_default())}),
        }
    };
    let ready = status["bucketReady"] == json!(true);
    set_status(sim, COSI, "buckets", &b, status, &cosi())?;
    Ok(pending(ready))
}

fn policies(b: &Value) -> Vec<String> {
    b.pointer("/spec/managementPolicies")
        .and_then(Value::as_array)
        .map(|p| {
            p.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_else(|| vec!["*".to_owned()])
}

pub fn reconcile_crossplane(
    sim: &dyn Api,
    group: &str,
    ns: &str,
    name: &str,
) -> Result<Requeue, ApiError> {
    let Some(b) = get(sim, group, "buckets", ns, name)? else {
        return Ok(Requeue::No);
    };
    let key = if ns.is_empty() {
        name.to_owned()
    } else {
        format!("{ns}/{name}")
    };
    let external = str_at(&b, "/metadata/annotations/crossplane.io~1external-name")
        .unwrap_or(name)
        .to_owned();
    let policies = policies(&b);
    let may = |p: &str| policies.iter().any(|x| x == "*" || x == p);
    let orphan = str_at(&b, "/spec/deletionPolicy") == Some("Orphan");
    let ready = {
        let mut cloud = sim.cloud().lock();
        if !cloud.buckets.contains_key(&external) && may("Create") {
            cloud.create_bucket(
                &external,
                "",
                &format!("created by Crossplane Bucket {key} (external resource absent)"),
            );
        }
        match cloud.buckets.get_mut(&external) {
            Some(bucket) => {
                bucket.managed_by = Some(key.clone());
                bucket.delete_with_claim = !orphan && may("Delete");
                true
            }
            None => false,
        }
    };
    if ready && str_at(&b, "/metadata/annotations/crossplane.io~1external-name").is_none() {
        // Crossplane records the external name it found or created.
        super::patch_main(
            sim,
            group,
            "buckets",
            ns,
            name,
            &json!({"metadata": {"annotations": {"crossplane.io/external-name": external}}}),
            &crossplane(),
        )?;
    }
    let Some(b) = get(sim, group, "buckets", ns, name)? else {
        return Ok(Requeue::No);
    };
    let status = json!({
        "atProvider": {"id": external, "arn": format!("arn:aws:s3:::{external}")},
        "conditions": [
            {"type": "Ready", "status": if ready {"True"} else {"False"},
             "reason": if ready {"Available"} else {"Unavailable"}},
            {"type": "Synced", "status": "True", "reason": "ReconcileSuccess"},
        ],
    });
    set_status(sim, group, "buckets", &b, status, &crossplane())?;
    Ok(pending(ready))
}

pub fn reconcile_ack(sim: &dyn Api, ns: &str, name: &str) -> Result<Requeue, ApiError> {
    const GROUP: &str = "s3.services.k8s.aws";
    let Some(b) = get(sim, GROUP, "buckets", ns, name)? else {
        return Ok(Requeue::No);
    };
    let key = format!("{ns}/{name}");
    let adopt = str_at(
        &b,
        "/metadata/annotations/services.k8s.aws~1adoption-policy",
    ) == Some("adopt");
    let adopted_name = str_at(
        &b,
        "/metadata/annotations/services.k8s.aws~1adoption-fields",
    )
    .and_then(|f| serde_json::from_str::<Value>(f).ok())
    .and_then(|f| f["name"].as_str().map(str::to_owned));
    let retain = str_at(
        &b,
        "/metadata/annotations/services.k8s.aws~1deletion-policy",
    ) == Some("retain");
    let bucket = adopted_name
        .clone()
        .or_else(|| str_at(&b, "/spec/name").map(str::to_owned));
    let outcome = {
        let mut cloud = sim.cloud().lock();
        match &bucket {
            None => Err("spec.name is required".to_owned()),
            Some(bn) => {
                if !cloud.buckets.contains_key(bn) {
                    if adopt {
                        Err(format!("cannot adopt bucket {bn}: it does not exist"))
                    } else {
                        cloud.create_bucket(bn, "", &format!("created by ACK for Bucket {key}"));
                        Ok(bn.clone())
                    }
                } else {
                    Ok(bn.clone())
                }
            }
        }
        .inspect(|bn| {
            if let Some(cb) = cloud.buckets.get_mut(bn) {
                cb.managed_by = Some(key.clone());
                cb.delete_with_claim = !retain;
            }
        })
    };
    if adopt && outcome.is_ok() && b.pointer("/spec/name").is_none() {
        // ACK fills the spec from the adopted resource.
        super::patch_main(
            sim,
            GROUP,
            "buckets",
            ns,
            name,
            &json!({"spec": {"name": bucket}}),
            &ack(),
        )?;
    }
    let Some(b) = get(sim, GROUP, "buckets", ns, name)? else {
        return Ok(Requeue::No);
    };
    let ready = outcome.is_ok();
    let status = match &outcome {
        Ok(bn) => json!({
            "ackResourceMetadata": {"arn": format!("arn:aws:s3:::{bn}"), "ownerAccountID": "000000000000"},
            "conditions": [{"type": "ACK.ResourceSynced", "status": "True"}],
        }),
        Err(why) => json!({
            "conditions": [{"type": "ACK.Terminal", "status": "True", "message": why}],
        }),
    };
    set_status(sim, GROUP, "buckets", &b, status, &ack())?;
    Ok(pending(ready))
}
