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
//! - Rook/NooBaa `ObjectBucketClaim`, as lib-bucket-provisioner serves it: for a claim of
//!   a bucket StorageClass (provisioner `…/bucket` or `…/obc`) without
//!   `spec.objectBucketName`, provision the bucket (`bucketName`, else
//!   `generateBucketName-<suffix>`; an existing bucket is an error for a greenfield class)
//!   or grant access to the class's `parameters.bucketName` (brownfield); create a Secret and
//!   a ConfigMap named after the claim (owned by it) and the cluster-scoped `ObjectBucket`
//!   `obc-<ns>-<name>` whose `spec.reclaimPolicy` is the class's; then record
//!   `objectBucketName` and `bucketName` on the claim, with a finalizer. A claim that names
//!   its ObjectBucket is provisioned: nothing more is done (a restored pair is adopted as
//!   it is). Deleting the claim deletes a greenfield bucket when the *ObjectBucket* says
//!   `Delete`, else only revokes access; then the ObjectBucket, Secret and ConfigMap go.

use serde_json::{Value, json};

use super::{Api, Requeue, set_status, str_at};
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

fn obc_provisioner() -> Actor {
    Actor::system("system:serviceaccount:rook-ceph:rook-ceph-object-bucket")
}

fn pending(ready: bool) -> Requeue {
    if ready {
        Requeue::No
    } else {
        Requeue::After(super::RETRY)
    }
}

pub fn reconcile_claim(sim: &dyn Api, ns: &str, name: &str) -> Result<Requeue, ApiError> {
    let Some(claim) = sim.get(COSI, "bucketclaims", ns, name)? else {
        return Ok(Requeue::No);
    };
    let bound = str_at(&claim, "/status/bucketName")
        .map(|b| Ok::<_, ApiError>(sim.get(COSI, "buckets", "", b)?.map(|_| b.to_owned())))
        .transpose()?
        .flatten();
    let bucket_object = match (str_at(&claim, "/spec/existingBucketName"), bound) {
        // Brownfield: the claim names a Bucket object, not a cloud bucket.
        (Some(existing), _) => match sim.get(COSI, "buckets", "", existing)? {
            Some(b) => b,
            None => {
                let status = json!({"bucketReady": false,
                    "error": format!("Bucket {existing} not found")});
                set_status(sim, COSI, "bucketclaims", &claim, status, &cosi())?;
                return Ok(Requeue::After(super::RETRY));
            }
        },
        (None, Some(b)) => sim.get(COSI, "buckets", "", &b)?.unwrap_or(Value::Null),
        // Greenfield: a new Bucket object from the class.
        (None, None) => {
            let class = match str_at(&claim, "/spec/bucketClassName") {
                Some(c) => sim.get(COSI, "bucketclasses", "", c)?,
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
    let Some(b) = sim.get(COSI, "buckets", "", name)? else {
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
    let Some(b) = sim.get(group, "buckets", ns, name)? else {
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
        sim.merge_patch(
            group,
            "buckets",
            ns,
            name,
            &json!({"metadata": {"annotations": {"crossplane.io/external-name": external}}}),
            &crossplane(),
        )?;
    }
    let Some(b) = sim.get(group, "buckets", ns, name)? else {
        return Ok(Requeue::No);
    };
    let status = json!({
        "atProvider": {"id": external, "arn": format!("arn:aws:s3:::{external}")},
        "conditions": [
            condition(&b, "Ready", ready, if ready {"Available"} else {"Unavailable"}),
            condition(&b, "Synced", true, "ReconcileSuccess"),
        ],
    });
    set_status(sim, group, "buckets", &b, status, &crossplane())?;
    Ok(pending(ready))
}

/// A Crossplane condition (`xpv1.Condition`: its CRDs require every field): its
/// `lastTransitionTime` moves only when its status does.
fn condition(obj: &Value, ty: &str, status: bool, reason: &str) -> Value {
    let status = if status { "True" } else { "False" };
    let since = obj
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|c| c["type"] == ty && c["status"] == status)
        .and_then(|c| str_at(c, "/lastTransitionTime"))
        .map(str::to_owned)
        .unwrap_or_else(|| chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    json!({"type": ty, "status": status, "reason": reason, "lastTransitionTime": since})
}

pub fn reconcile_ack(sim: &dyn Api, ns: &str, name: &str) -> Result<Requeue, ApiError> {
    const GROUP: &str = "s3.services.k8s.aws";
    let Some(b) = sim.get(GROUP, "buckets", ns, name)? else {
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
        sim.merge_patch(
            GROUP,
            "buckets",
            ns,
            name,
            &json!({"spec": {"name": bucket}}),
            &ack(),
        )?;
    }
    let Some(b) = sim.get(GROUP, "buckets", ns, name)? else {
        return Ok(Requeue::No);
    };
    let ready = outcome.is_ok();
    let status = match &outcome {
        Ok(bn) => json!({
            // The CRD requires the account and the region the controller runs in.
            "ackResourceMetadata": {"arn": format!("arn:aws:s3:::{bn}"), "ownerAccountID": "000000000000",
                                    "region": str_at(&b, "/metadata/annotations/services.k8s.aws~1region")
                                        .unwrap_or(crate::cloud::region())},
            "conditions": [{"type": "ACK.ResourceSynced", "status": "True"}],
        }),
        Err(why) => json!({
            "conditions": [{"type": "ACK.Terminal", "status": "True", "message": why}],
        }),
    };
    set_status(sim, GROUP, "buckets", &b, status, &ack())?;
    Ok(pending(ready))
}

const OBC_GROUP: &str = "objectbucket.io";
/// lib-bucket-provisioner's finalizer on claims it has provisioned.
const OBC_FINALIZER: &str = "objectbucket.io/finalizer";

/// Whether a StorageClass is served by a bucket provisioner (Rook's
/// `<ns>.ceph.rook.io/bucket`, NooBaa's `<ns>.noobaa.io/obc`, the AWS S3 provisioner's
/// `aws-s3.io/bucket`); claims of any other class are someone else's.
fn is_bucket_class(class: &Value) -> bool {
    str_at(class, "/provisioner").is_some_and(|p| p.ends_with("/bucket") || p.ends_with("/obc"))
}

fn set_obc_phase(sim: &dyn Api, obc: &Value, phase: &str) -> Result<(), ApiError> {
    set_status(
        sim,
        OBC_GROUP,
        "objectbucketclaims",
        obc,
        json!({"phase": phase}),
        &obc_provisioner(),
    )
}

/// The cloud's side of the binding: who manages the bucket, and whether deleting the
/// claim (or the cluster) deletes it — greenfield and the ObjectBucket says `Delete`.
fn mark_obc_bucket(sim: &dyn Api, bucket: &str, claim: &str, greenfield: bool, ob: &Value) {
    let delete = greenfield && str_at(ob, "/spec/reclaimPolicy") == Some("Delete");
    if let Some(b) = sim.cloud().lock().buckets.get_mut(bucket) {
        b.managed_by = Some(claim.to_owned());
        b.delete_with_claim = delete;
    }
}

pub fn reconcile_obc(sim: &dyn Api, ns: &str, name: &str) -> Result<Requeue, ApiError> {
    let Some(obc) = sim.get(OBC_GROUP, "objectbucketclaims", ns, name)? else {
        return Ok(Requeue::No);
    };
    let claim = format!("{ns}/{name}");
    let class = match str_at(&obc, "/spec/storageClassName") {
        Some(c) => sim.get("storage.k8s.io", "storageclasses", "", c)?,
        None => None,
    };
    let Some(class) = class else {
        super::warn(
            sim,
            &obc,
            "ProvisioningFailed",
            "no StorageClass defined for the ObjectBucketClaim, or it does not exist",
            &obc_provisioner(),
        )?;
        return Ok(Requeue::After(super::RETRY));
    };
    if !is_bucket_class(&class) {
        return Ok(Requeue::No);
    }
    let brownfield = str_at(&class, "/parameters/bucketName").map(str::to_owned);
    let ob_name = format!("obc-{ns}-{name}");
    if obc.pointer("/metadata/deletionTimestamp").is_some() {
        return delete_obc(sim, &obc, &ob_name, brownfield.is_none());
    }
    if str_at(&obc, "/spec/objectBucketName").is_some_and(|n| !n.is_empty()) {
        // Provisioning is complete (the library's own test); the cloud still learns who
        // manages the bucket and what deleting the claim would do.
        let ob_name = str_at(&obc, "/spec/objectBucketName").unwrap_or(&ob_name);
        if let Some(ob) = sim.get(OBC_GROUP, "objectbuckets", "", ob_name)?
            && let Some(bucket) = str_at(&ob, "/spec/endpoint/bucketName")
        {
            mark_obc_bucket(sim, bucket, &claim, brownfield.is_none(), &ob);
        }
        return Ok(Requeue::No);
    }
    if str_at(&obc, "/status/phase").is_none() {
        set_obc_phase(sim, &obc, "Pending")?;
    }
    let fail = |why: String| -> Result<Requeue, ApiError> {
        let obc = sim
            .get(OBC_GROUP, "objectbucketclaims", ns, name)?
            .unwrap_or(Value::Null);
        super::warn(sim, &obc, "ProvisioningFailed", &why, &obc_provisioner())?;
        Ok(Requeue::After(super::RETRY))
    };
    let bucket = match (
        &brownfield,
        str_at(&obc, "/spec/bucketName").filter(|b| !b.is_empty()),
        str_at(&obc, "/spec/generateBucketName").filter(|b| !b.is_empty()),
    ) {
        (Some(b), _, _) => b.clone(),
        (None, Some(_), Some(_)) => {
            return fail("cannot define both bucketName and generateBucketName".into());
        }
        (None, Some(b), None) => b.to_owned(),
        (None, None, Some(prefix)) => {
            let uid = str_at(&obc, "/metadata/uid").unwrap_or_default();
            format!("{prefix}-{uid}")
        }
        (None, None, None) => {
            return fail("expected either bucketName or generateBucketName defined".into());
        }
    };
    {
        let mut cloud = sim.cloud().lock();
        let ours = cloud
            .buckets
            .get(&bucket)
            .map(|b| b.managed_by.as_deref() == Some(claim.as_str()));
        match (brownfield.is_some(), ours) {
            // Grant: the bucket must exist.
            (true, None) => {
                drop(cloud);
                return fail(format!(
                    "error granting access to bucket {bucket}: it does not exist"
                ));
            }
            (true, Some(_)) | (false, Some(true)) => {}
            (false, Some(false)) => {
                drop(cloud);
                return fail(format!(
                    "error provisioning bucket {bucket}: bucket already exists"
                ));
            }
            (false, None) => {
                cloud.create_bucket(
                    &bucket,
                    "",
                    &format!("provisioned for ObjectBucketClaim {claim}"),
                );
                if let Some(b) = cloud.buckets.get_mut(&bucket) {
                    b.managed_by = Some(claim.clone());
                }
            }
        }
    }
    let owner = json!([{
        "apiVersion": "objectbucket.io/v1alpha1", "kind": "ObjectBucketClaim",
        "name": name, "uid": obc["metadata"]["uid"],
        "controller": true, "blockOwnerDeletion": true,
    }]);
    let host = "s3.eu-west-1.amazonaws.com";
    let ensure = |plural: &str, obj: Value| -> Result<(), ApiError> {
        if sim.get("", plural, ns, name)?.is_some() {
            return Ok(());
        }
        sim.create("", plural, ns, obj, &obc_provisioner())
            .map(|_| ())
    };
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    ensure(
        "secrets",
        json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": ns, "ownerReferences": owner},
            "type": "Opaque",
            "data": {"AWS_ACCESS_KEY_ID": b64(&format!("AKIA{}", bucket.len())),
                     "AWS_SECRET_ACCESS_KEY": b64(&format!("secret-for-{bucket}"))}}),
    )?;
    ensure(
        "configmaps",
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": ns, "ownerReferences": owner},
            "data": {"BUCKET_HOST": host, "BUCKET_NAME": bucket, "BUCKET_PORT": "443",
                     "BUCKET_REGION": "eu-west-1", "BUCKET_SUBREGION": ""}}),
    )?;
    let ob = match sim.get(OBC_GROUP, "objectbuckets", "", &ob_name)? {
        Some(ob) => ob,
        None => {
            let ob = json!({
                "apiVersion": "objectbucket.io/v1alpha1", "kind": "ObjectBucket",
                "metadata": {"name": ob_name},
                "spec": {
                    "storageClassName": class["metadata"]["name"],
                    "claimRef": {"apiVersion": "objectbucket.io/v1alpha1",
                        "kind": "ObjectBucketClaim", "namespace": ns, "name": name,
                        "uid": obc["metadata"]["uid"]},
                    // The class's policy, copied once: what deleting the claim obeys.
                    "reclaimPolicy": str_at(&class, "/reclaimPolicy").unwrap_or("Delete"),
                    "endpoint": {"bucketHost": host, "bucketPort": 443, "bucketName": bucket,
                        "region": "eu-west-1", "subRegion": "", "additionalConfig": {}},
                },
            });
            let created = sim.create(OBC_GROUP, "objectbuckets", "", ob, &obc_provisioner())?;
            set_status(
                sim,
                OBC_GROUP,
                "objectbuckets",
                &created,
                json!({"phase": "Bound"}),
                &obc_provisioner(),
            )?;
            created
        }
    };
    mark_obc_bucket(sim, &bucket, &claim, brownfield.is_none(), &ob);
    let mut finalizers: Vec<Value> = obc
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if !finalizers.iter().any(|f| f == OBC_FINALIZER) {
        finalizers.push(json!(OBC_FINALIZER));
    }
    sim.merge_patch(
        OBC_GROUP,
        "objectbucketclaims",
        ns,
        name,
        &json!({"metadata": {"finalizers": finalizers},
                "spec": {"objectBucketName": ob_name, "bucketName": bucket}}),
        &obc_provisioner(),
    )?;
    if let Some(obc) = sim.get(OBC_GROUP, "objectbucketclaims", ns, name)? {
        set_obc_phase(sim, &obc, "Bound")?;
    }
    Ok(Requeue::No)
}

/// A claim being deleted: delete a greenfield bucket whose ObjectBucket says `Delete`,
/// else revoke access; remove the ObjectBucket, Secret and ConfigMap; release the claim.
fn delete_obc(
    sim: &dyn Api,
    obc: &Value,
    ob_name: &str,
    greenfield: bool,
) -> Result<Requeue, ApiError> {
    let ns = str_at(obc, "/metadata/namespace").unwrap_or_default();
    let name = str_at(obc, "/metadata/name").unwrap_or_default();
    let ob_name = str_at(obc, "/spec/objectBucketName").unwrap_or(ob_name);
    let actor = obc_provisioner();
    if let Some(ob) = sim.get(OBC_GROUP, "objectbuckets", "", ob_name)? {
        if let Some(bucket) = str_at(&ob, "/spec/endpoint/bucketName") {
            let mut cloud = sim.cloud().lock();
            if greenfield && str_at(&ob, "/spec/reclaimPolicy") == Some("Delete") {
                let _ = cloud.delete_bucket(
                    bucket,
                    &format!(
                        "ObjectBucketClaim {ns}/{name} deleted: ObjectBucket reclaimPolicy Delete"
                    ),
                );
            } else if let Some(b) = cloud.buckets.get_mut(bucket) {
                b.managed_by = None;
                b.delete_with_claim = false;
            }
        }
        // Already gone is what was wanted.
        let _ = sim.delete(OBC_GROUP, "objectbuckets", "", ob_name, &actor);
    }
    for plural in ["secrets", "configmaps"] {
        // Already gone is what was wanted.
        let _ = sim.delete("", plural, ns, name, &actor);
    }
    let finalizers: Vec<Value> = obc
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|f| *f != OBC_FINALIZER)
        .cloned()
        .collect();
    sim.merge_patch(
        OBC_GROUP,
        "objectbucketclaims",
        ns,
        name,
        &json!({"metadata": {"finalizers": finalizers}}),
        &actor,
    )?;
    Ok(Requeue::No)
}
