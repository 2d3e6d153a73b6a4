//! Tokens for EKS clusters, as `aws eks get-token` and aws-iam-authenticator make them: an STS
//! `GetCallerIdentity` request presigned for 60 s with the cluster's name in the signed
//! `x-k8s-aws-id` header, its URL base64url-encoded after `k8s-aws-v1.`. The API server's
//! authenticator sends it on to STS and learns who signed it. Argo CD cluster Secrets with
//! `awsAuthConfig` (the ones a `ClusterSet` makes) are reached this way.

use std::time::{Duration, SystemTime};

use anyhow::{Context, anyhow};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use base64::Engine as _;

/// How long a presigned request stays valid: what aws-iam-authenticator uses.
const EXPIRES: Duration = Duration::from_secs(60);

/// Returns a token for cluster `cluster`, signed with `credentials` for STS in `region`.
pub(super) fn token(
    credentials: &Credentials,
    region: &str,
    cluster: &str,
    now: SystemTime,
) -> anyhow::Result<String> {
    let identity = credentials.clone().into();
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(EXPIRES);
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("sts")
        .time(now)
        .settings(settings)
        .build()
        .map_err(|e| anyhow!("signing parameters: {e}"))?
        .into();
    let url =
        format!("https://sts.{region}.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15");
    let headers = [("x-k8s-aws-id", cluster)];
    let signable = SignableRequest::new("GET", &url, headers.into_iter(), SignableBody::Bytes(&[]))
        .map_err(|e| anyhow!("presigning GetCallerIdentity: {e}"))?;
    let (instructions, _) = sign(signable, &params)
        .map_err(|e| anyhow!("presigning GetCallerIdentity: {e}"))?
        .into_parts();
    let mut request = http::Request::builder()
        .uri(&url)
        .header("x-k8s-aws-id", cluster)
        .body(())
        .context("the GetCallerIdentity request")?;
    instructions.apply_to_request_http1x(&mut request);
    let presigned = request.uri().to_string();
    Ok(format!(
        "k8s-aws-v1.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(presigned)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_a_presigned_get_caller_identity_naming_the_cluster() {
        let credentials = Credentials::new("AKIDEXAMPLE", "secret", None, None, "test");
        let token = token(&credentials, "eu-west-1", "cdk1", SystemTime::UNIX_EPOCH).unwrap();
        let encoded = token.strip_prefix("k8s-aws-v1.").unwrap();
        let url = String::from_utf8(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(encoded)
                .unwrap(),
        )
        .unwrap();
        assert!(
            url.starts_with(
                "https://sts.eu-west-1.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15&"
            ),
            "{url}"
        );
        for part in [
            "X-Amz-Algorithm=AWS4-HMAC-SHA256",
            "X-Amz-Credential=AKIDEXAMPLE%2F19700101%2Feu-west-1%2Fsts%2Faws4_request",
            "X-Amz-Expires=60",
            "X-Amz-SignedHeaders=host%3Bx-k8s-aws-id",
            "X-Amz-Signature=",
        ] {
            assert!(url.contains(part), "{part} not in {url}");
        }
        assert!(!url.contains("secret"));
    }
}
