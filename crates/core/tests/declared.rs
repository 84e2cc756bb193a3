//! Equivalence, proven: Cashless and MiracleCash written as files (deploy/providers/) against
//! the built-in adapters, the same sandbox payments over real HTTP, the same decisions.
//!
//! Each scenario asks the built-in adapter and the generic adapter reading the file about the
//! same sandbox payment (same URL, same credentials, same injected fault) and compares what
//! paywatch concludes: the observation (status, raw status, detail, codes), or the error's
//! class, its wait and whether it is permanent; and the poll policy's decisions over it.

use std::error::Error;
use std::path::Path;
use std::sync::Arc;

use chrono::{TimeDelta, Utc};
use paywatch_core::declared::{Definition, Resolved, load_file};
use paywatch_core::{
    CheckError, Observation, PaymentId, PaymentStatus, PollPolicy, PollState, Provider,
    ProviderClient, ProvidersConfig, Secret,
};
use paywatch_sandbox::{
    Fault, FaultScope, NewPayment, Provider as SandboxProvider, Sandbox, SandboxConfig,
    SandboxHandle,
};
use rand::SeedableRng;
use serde_json::{Value, json};
use url::Url;

type TestResult = Result<(), Box<dyn Error>>;

/// One built-in and its file twin, both pointed at one sandbox.
struct Pair {
    sandbox: SandboxHandle,
    builtin: Provider,
    declared: Provider,
    definition: Arc<Definition>,
    client: ProviderClient,
    sandbox_provider: SandboxProvider,
}

fn example(file: &str) -> Result<Arc<Definition>, Box<dyn Error>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy/providers")
        .join(file);
    Ok(Arc::new(load_file(&path)?))
}

impl Pair {
    /// `file`'s provider against `builtin`'s sandbox endpoint, with `builtin`'s sandbox
    /// credentials under the file's names (`wrong` replaces the last one, for bad credentials).
    async fn start(
        builtin: Provider,
        file: &str,
        wrong: Option<&str>,
    ) -> Result<Self, Box<dyn Error>> {
        let sandbox = Sandbox::start(SandboxConfig::default(), "127.0.0.1:0".parse()?).await?;
        let base = Url::parse(&sandbox.base_url())?;
        let mut config = ProvidersConfig::sandbox(&base);
        let definition = example(file)?;
        let (sandbox_provider, endpoint, mut creds) = match builtin {
            Provider::Cashless => {
                let c = config.cashless.as_mut().ok_or("cashless")?;
                if let Some(w) = wrong {
                    c.api_secret = w.into();
                }
                (
                    SandboxProvider::Cashless,
                    c.base_url.clone(),
                    vec![
                        ("api_key", c.api_key.clone()),
                        ("api_secret", c.api_secret.clone()),
                    ],
                )
            }
            Provider::MiracleCash => {
                let c = config.miraclecash.as_mut().ok_or("miraclecash")?;
                if let Some(w) = wrong {
                    c.api_key = w.into();
                }
                (
                    SandboxProvider::MiracleCash,
                    c.base_url.clone(),
                    vec![
                        ("client_id", c.client_id.clone()),
                        ("api_key", c.api_key.clone()),
                    ],
                )
            }
            other => return Err(format!("no twin for {other}").into()),
        };
        let credentials = creds
            .drain(..)
            .map(|(k, v): (&str, Secret)| (k.to_owned(), v))
            .collect();
        config.declared.push(Resolved {
            definition: Arc::clone(&definition),
            base_url: endpoint,
            credentials,
        });
        let client = ProviderClient::new(&config)?;
        Ok(Self {
            sandbox,
            builtin,
            declared: definition.provider,
            definition,
            client,
            sandbox_provider,
        })
    }

    fn payment(&self, raw: &str, fields: Option<Value>) -> Result<PaymentId, Box<dyn Error>> {
        let spec = NewPayment::new(self.sandbox_provider);
        let spec = match fields {
            Some(Value::Object(fields)) => spec.step_with_fields(0, raw, fields),
            _ => spec.step(0, raw),
        };
        Ok(PaymentId::new(
            self.sandbox.state().create_payment(spec)?.id,
        )?)
    }

    fn fault(&self, id: &PaymentId, fault: Fault) -> TestResult {
        self.sandbox.state().set_fault(
            FaultScope::Payment {
                provider: self.sandbox_provider,
                id: id.to_string(),
            },
            fault,
        )?;
        Ok(())
    }

    /// Both adapters' answers about `id`, each after `before` (e.g. arming a one-shot fault).
    async fn both(
        &self,
        id: &PaymentId,
        before: impl Fn() -> TestResult,
    ) -> Result<(Outcome, Outcome), Box<dyn Error>> {
        before()?;
        let builtin = Outcome::of(self.client.check(self.builtin, id).await);
        before()?;
        let declared = Outcome::of(self.client.check(self.declared, id).await);
        Ok((builtin, declared))
    }

    async fn assert_same(
        &self,
        id: &PaymentId,
        before: impl Fn() -> TestResult,
    ) -> Result<Outcome, Box<dyn Error>> {
        let (builtin, declared) = self.both(id, before).await?;
        assert_eq!(builtin, declared, "{} vs {}", self.builtin, self.declared);
        Ok(builtin)
    }
}

/// What paywatch concludes from one check, without the provider's name in messages.
#[derive(Debug, PartialEq)]
enum Outcome {
    Observed {
        status: PaymentStatus,
        raw: String,
        detail: Option<String>,
        codes: Vec<String>,
    },
    Failed {
        kind: &'static str,
        retry_after: Option<std::time::Duration>,
        permanent: bool,
    },
}

impl Outcome {
    fn of(result: Result<Observation, CheckError>) -> Self {
        match result {
            Ok(o) => Outcome::Observed {
                status: o.status,
                raw: o.raw_status,
                detail: o.detail,
                codes: o.delivered_codes,
            },
            Err(e) => Outcome::Failed {
                kind: e.kind(),
                retry_after: e.retry_after(),
                permanent: e.is_permanent(),
            },
        }
    }
}

const NOTHING: fn() -> TestResult = || Ok(());

#[tokio::test]
async fn cashless_file_reads_every_status_as_the_builtin() -> TestResult {
    let pair = Pair::start(Provider::Cashless, "cashless.toml", None).await?;
    for raw in [
        "NOT_PAID",
        "PARTIALLY_PAID",
        "FULLY_PAID",
        "REFUNDED",
        "fully_paid",
    ] {
        let id = pair.payment(raw, None)?;
        let outcome = pair.assert_same(&id, NOTHING).await?;
        assert!(
            matches!(outcome, Outcome::Observed { .. }),
            "{raw}: {outcome:?}"
        );
    }
    // The object form of the status.
    let id = pair.payment(
        "FULLY_PAID",
        Some(json!({"status": {"name": "FULLY_PAID"}})),
    )?;
    let outcome = pair.assert_same(&id, NOTHING).await?;
    assert!(matches!(
        outcome,
        Outcome::Observed {
            status: PaymentStatus::Paid,
            ..
        }
    ));
    Ok(())
}

#[tokio::test]
async fn miraclecash_file_reads_every_status_and_detail_as_the_builtin() -> TestResult {
    let pair = Pair::start(Provider::MiracleCash, "miraclecash.toml", None).await?;
    for raw in [
        "pending",
        "successful",
        "unsuccessful",
        "expired",
        "cancelled",
        "confirming",
    ] {
        let id = pair.payment(raw, None)?;
        pair.assert_same(&id, NOTHING).await?;
    }
    let id = pair.payment("successful", Some(json!({"blockchainId": "eth"})))?;
    let outcome = pair.assert_same(&id, NOTHING).await?;
    assert!(
        matches!(&outcome, Outcome::Observed { detail: Some(d), .. } if d == "blockchainId=eth"),
        "{outcome:?}"
    );
    Ok(())
}

#[tokio::test]
async fn errors_are_classified_alike() -> TestResult {
    for (builtin, file) in [
        (Provider::Cashless, "cashless.toml"),
        (Provider::MiracleCash, "miraclecash.toml"),
    ] {
        let pair = Pair::start(builtin, file, None).await?;
        let raw = pair.sandbox_provider.initial_status();
        let id = pair.payment(raw, None)?;
        // 429 with Retry-After, then cleared.
        let outcome = pair
            .assert_same(&id, || pair.fault(&id, Fault::rate_limited(2).times(1)))
            .await?;
        assert_eq!(
            outcome,
            Outcome::Failed {
                kind: "rate_limited",
                retry_after: Some(std::time::Duration::from_secs(2)),
                permanent: false
            }
        );
        // 5xx: transient.
        for code in [500, 502, 503, 504] {
            let outcome = pair
                .assert_same(&id, || pair.fault(&id, Fault::status(code).times(1)))
                .await?;
            assert!(
                matches!(
                    outcome,
                    Outcome::Failed {
                        kind: "transient",
                        ..
                    }
                ),
                "{code}: {outcome:?}"
            );
        }
        // A body that is no status document: malformed, permanent.
        let outcome = pair
            .assert_same(&id, || pair.fault(&id, Fault::malformed().times(1)))
            .await?;
        assert!(matches!(
            outcome,
            Outcome::Failed {
                kind: "malformed",
                permanent: true,
                ..
            }
        ));
        // A dropped connection: transient.
        let outcome = pair
            .assert_same(&id, || pair.fault(&id, Fault::drop_connection().times(1)))
            .await?;
        assert!(
            matches!(
                outcome,
                Outcome::Failed {
                    kind: "transient",
                    ..
                }
            ),
            "{outcome:?}"
        );
        // Unknown payment.
        let outcome = pair
            .assert_same(&PaymentId::new("no-such-payment")?, NOTHING)
            .await?;
        assert!(matches!(
            outcome,
            Outcome::Failed {
                kind: "not_found",
                permanent: false,
                ..
            }
        ));
    }
    Ok(())
}

#[tokio::test]
async fn bad_credentials_are_unauthorized_alike_and_never_echoed() -> TestResult {
    let wrong = "definitely-wrong-credential";
    for (builtin, file) in [
        (Provider::Cashless, "cashless.toml"),
        (Provider::MiracleCash, "miraclecash.toml"),
    ] {
        let pair = Pair::start(builtin, file, Some(wrong)).await?;
        let id = pair.payment(pair.sandbox_provider.initial_status(), None)?;
        let outcome = pair.assert_same(&id, NOTHING).await?;
        assert!(matches!(
            outcome,
            Outcome::Failed {
                kind: "unauthorized",
                permanent: true,
                ..
            }
        ));
        let error = pair
            .client
            .check(pair.declared, &id)
            .await
            .expect_err("unauthorized");
        let text = format!("{error} {error:?}");
        assert!(
            !text.contains(wrong) && text.contains(pair.declared.as_str()),
            "{text}"
        );
    }
    Ok(())
}

/// A partial payment reopens fast polling for both: the same decisions, step by step.
#[tokio::test]
async fn partial_payments_reset_fast_polling_alike() -> TestResult {
    let pair = Pair::start(Provider::Cashless, "cashless.toml", None).await?;
    let policy: PollPolicy = PollPolicy {
        jitter: 0.0,
        ..pair.definition.policy.clone()
    };
    assert_eq!(pair.definition.policy, PollPolicy::cashless());
    let t0 = Utc::now();
    let mut decisions = Vec::new();
    for provider in [pair.builtin, pair.declared] {
        let mut state = PollState::new(&policy, t0);
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut seen = Vec::new();
        for (step, raw) in [
            "NOT_PAID",
            "NOT_PAID",
            "NOT_PAID",
            "PARTIALLY_PAID",
            "PARTIALLY_PAID",
            "FULLY_PAID",
        ]
        .into_iter()
        .enumerate()
        {
            let id = pair.payment(raw, None)?;
            let result = pair.client.check(provider, &id).await;
            let now = t0 + TimeDelta::seconds(10 * step as i64);
            seen.push(policy.next_with_rng(&mut state, result.as_ref(), now, &mut rng));
        }
        decisions.push(seen);
    }
    assert_eq!(decisions[0], decisions[1]);
    // The partial payment put the delay back to the first one.
    assert_eq!(
        decisions[0][3],
        paywatch_core::PollDecision::CheckAgainIn(policy.first_delay)
    );
    Ok(())
}

/// Cashless's webhook names the bill at `bill.id` and proves nothing; the file says the same.
#[test]
fn cashless_webhook_reads_the_bill_as_the_builtin() -> TestResult {
    let definition = example("cashless.toml")?;
    let webhook = definition.webhook.as_ref().ok_or("webhook")?;
    let none = Default::default();
    let headers = Default::default();
    let id = webhook.verify(
        &headers,
        br#"{"bill":{"id":"b-1","status":"FULLY_PAID"}}"#,
        &none,
        Utc::now(),
    )?;
    assert_eq!(id, "b-1");
    for bad in [&b"{}"[..], b"not json", br#"{"bill":{}}"#] {
        assert!(webhook.verify(&headers, bad, &none, Utc::now()).is_err());
    }
    Ok(())
}

/// Paylink exists only as a file: the sandbox serves it from the same file, checking its signed
/// requests; the generic adapter reads its statuses, amounts, receipt and vouchers.
#[tokio::test]
async fn a_provider_that_is_only_a_file_is_served_and_read() -> TestResult {
    let paylink = example("paylink.toml")?;
    let sandbox = Sandbox::start_with(
        SandboxConfig::default(),
        "127.0.0.1:0".parse()?,
        &[Arc::clone(&paylink)],
    )
    .await?;
    let base = Url::parse(&sandbox.base_url())?;
    let mut config = ProvidersConfig::default();
    config
        .declared
        .push(Resolved::sandbox(Arc::clone(&paylink), &base));
    let client = ProviderClient::new(&config)?;
    let step = |after_ms, status: &str, fields: Value| paywatch_sandbox::declared::DeclaredStep {
        after_ms,
        status: status.to_owned(),
        fields: fields.as_object().cloned().unwrap_or_default(),
    };
    sandbox.declared().create(
        "paylink",
        "ch-1",
        vec![step(
            0,
            "awaiting_payment",
            json!({"charge": {"amount": 500}}),
        )],
    )?;
    let seen = client
        .check(paylink.provider, &PaymentId::new("ch-1")?)
        .await?;
    assert_eq!(seen.status, PaymentStatus::Pending);
    assert_eq!(seen.detail.as_deref(), Some("amount=500"));
    sandbox.declared().create(
        "paylink",
        "ch-2",
        vec![step(
            0,
            "succeeded",
            json!({"charge": {"amount": 500, "amount_received": 500, "receipt_no": "R-7", "vouchers": ["V-1", "V-2"]}}),
        )],
    )?;
    let seen = client
        .check(paylink.provider, &PaymentId::new("ch-2")?)
        .await?;
    assert_eq!(seen.status, PaymentStatus::Paid);
    assert_eq!(
        seen.detail.as_deref(),
        Some("amount=500, paid=500, receipt=R-7")
    );
    assert_eq!(seen.delivered_codes, ["V-1", "V-2"]);
    assert!(
        !format!("{seen:?}").contains("V-1"),
        "codes stay out of Debug"
    );
    // A status the file does not map is an error naming it (Paylink keeps the default).
    sandbox
        .declared()
        .create("paylink", "ch-3", vec![step(0, "refunded", json!({}))])?;
    let error = client
        .check(paylink.provider, &PaymentId::new("ch-3")?)
        .await
        .expect_err("unmapped");
    assert!(
        error.is_permanent() && error.to_string().contains("\"refunded\""),
        "{error}"
    );
    // Unknown payment; and a wrong signing secret is refused by the sandbox.
    let error = client
        .check(paylink.provider, &PaymentId::new("nope")?)
        .await
        .expect_err("unknown");
    assert_eq!(error.kind(), "not_found");
    let mut wrong = Resolved::sandbox(Arc::clone(&paylink), &base);
    wrong
        .credentials
        .insert("signing_secret".into(), Secret::new("wrong"));
    let client = ProviderClient::new(&ProvidersConfig {
        declared: vec![wrong],
        ..ProvidersConfig::default()
    })?;
    let error = client
        .check(paylink.provider, &PaymentId::new("ch-1")?)
        .await
        .expect_err("bad signature");
    assert_eq!(error.kind(), "unauthorized");
    Ok(())
}
