//! The bucket operator, in two styles: COSI `BucketClaim` (`existingBucketName` adopts,
//! `bucketClassName` creates a NEW bucket whose fate follows the class's deletion policy)
//! and Crossplane `s3.aws.upbound.io` `Bucket` (`crossplane.io/external-name` names the bucket;
//! `deletionPolicy: Orphan` keeps it; `managementPolicies: [Observe]` never creates).

use serde_json::{Value, json};

use super::{Requeue, get, set_status, str_at};
use crate::status::ApiError;
use crate::{Actor, Sim};

fn cosi() -> Actor {
    Actor::system("system:serviceaccount:cosi-system:objectstorage-controller")
}

fn crossplane() -> Actor {
    Actor::system("system:serviceaccount:crossplane-system:provider-aws-s3")
}

pub fn reconcile_claim(sim: &Sim, ns: &str, name: &str) -> Result<Requeue, ApiError> {
    let Some(claim) = get(sim, "objectstorage.k8s.io", "bucketclaims", ns, name) else {
        return Ok(Requeue::No);
    };
    let key = format!("{ns}/{name}");
    let class = str_at(&claim, "/spec/bucketClassName")
        .and_then(|c| get(sim, "objectstorage.k8s.io", "bucketclasses", "", c));
    let delete_policy = class
        .as_ref()
        .and_then(|c| str_at(c, "/deletionPolicy"))
        .unwrap_or("Delete")
        == "Delete";
    let status = {
        let mut cloud = sim.cloud.lock();
        if let Some(existing) = str_at(&claim, "/spec/existingBucketName") {
            match cloud.buckets.get_mut(existing) {
                Some(b) => {
                    b.managed_by = Some(key.clone());
                    // An adopted bucket is only deleted with its claim if a class says so.
                    b.delete_with_claim = class.is_some() && delete_policy;
                    json!({"bucketReady": true, "bucketName": existing})
                }
                None => json!({"bucketReady": false,
                    "error": format!("existing bucket {existing} not found")}),
            }
        } else if class.is_some() {
            let current = str_at(&claim, "/status/bucketName")
                .filter(|b| cloud.buckets.contains_key(*b))
                .map(str::to_owned);
            let bucket = match current {
                Some(b) => b,
                None => {
                    let uid = str_at(&claim, "/metadata/uid").unwrap_or("00000000");
                    let bname = format!("{name}-{}", &uid[..8.min(uid.len())]);
                    cloud.create_bucket(
                        &bname,
                        "",
                        &format!("created for BucketClaim {key} (no existingBucketName)"),
                    );
                    bname
                }
            };
            if let Some(b) = cloud.buckets.get_mut(&bucket) {
                b.managed_by = Some(key.clone());
                b.delete_with_claim = delete_policy;
            }
            json!({"bucketReady": true, "bucketName": bucket})
        } else {
            json!({"bucketReady": false, "error": "neither existingBucketName nor a known bucketClassName"})
        }
    };
    let pending = status["bucketReady"] != json!(true);
    set_status(
        sim,
        "objectstorage.k8s.io",
        "bucketclaims",
        &claim,
        status,
        &cosi(),
    )?;
    Ok(if pending {
        Requeue::After(super::RETRY)
    } else {
        Requeue::No
    })
}

pub fn reconcile_crossplane(sim: &Sim, name: &str) -> Result<Requeue, ApiError> {
    let Some(b) = get(sim, "s3.aws.upbound.io", "buckets", "", name) else {
        return Ok(Requeue::No);
    };
    let external = str_at(&b, "/metadata/annotations/crossplane.io~1external-name")
        .unwrap_or(name)
        .to_owned();
    let observe_only = b
        .pointer("/spec/managementPolicies")
        .and_then(Value::as_array)
        .is_some_and(|p| p.len() == 1 && p[0] == "Observe");
    let orphan = str_at(&b, "/spec/deletionPolicy") == Some("Orphan");
    let ready = {
        let mut cloud = sim.cloud.lock();
        if !cloud.buckets.contains_key(&external) && !observe_only {
            cloud.create_bucket(
                &external,
                "",
                &format!("created by Crossplane Bucket {name} (external resource absent)"),
            );
        }
        match cloud.buckets.get_mut(&external) {
            Some(bucket) => {
                bucket.managed_by = Some(name.to_owned());
                bucket.delete_with_claim = !orphan && !observe_only;
                true
            }
            None => false,
        }
    };
    if ready && str_at(&b, "/metadata/annotations/crossplane.io~1external-name").is_none() {
        // Crossplane records the external name it found or created.
        super::patch_main(
            sim,
            "s3.aws.upbound.io",
            "buckets",
            "",
            name,
            &json!({"metadata": {"annotations": {"crossplane.io/external-name": external}}}),
            &crossplane(),
        )?;
    }
    let Some(b) = get(sim, "s3.aws.upbound.io", "buckets", "", name) else {
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
    set_status(
        sim,
        "s3.aws.upbound.io",
        "buckets",
        &b,
        status,
        &crossplane(),
    )?;
    Ok(if ready {
        Requeue::No
    } else {
        Requeue::After(super::RETRY)
    })
}
