//! The provider adapters against `paywatch-sandbox` over real HTTP: status mapping, error
//! classes and redaction, for every provider.

use std::error::Error;
use std::time::Duration;

use paywatch_core::{
    CheckError, Observation, PaymentId, PaymentStatus, PollDecision, PollPolicies, PollState,
    Provider, ProviderClient, ProvidersConfig,
};
use paywatch_sandbox::{
    Fault, FaultScope, NewPayment, Provider as SandboxProvider, Sandbox, SandboxConfig,
    SandboxHandle,
};
use serde_json::{Value, json};
use url::Url;

type TestResult = Result<(), Box<dyn Error>>;

/// Upper bound for anything a test waits on; generous for a loaded 2-core CI box.
const WAIT_LIMIT: Duration = Duration::from_secs(20);

fn sandbox_provider(provider: Provider) -> SandboxProvider {
    match provider {
        Provider::Cashless => SandboxProvider::Cashless,
        Provider::HandCash => SandboxProvider::HandCash,
        Provider::MiracleCash => SandboxProvider::MiracleCash,
        Provider::FoxReload => SandboxProvider::FoxReload,
        Provider::Declared(_) => unreachable!("these tests are of the built-in adapters"),
    }
}

struct Env {
    sandbox: SandboxHandle,
    client: ProviderClient,
}

impl Env {
    async fn start() -> Result<Self, Box<dyn Error>> {
        Self::start_with(|_| {}).await
    }

    async fn start_with(tweak: impl FnOnce(&mut ProvidersConfig)) -> Result<Self, Box<dyn Error>> {
        let sandbox = Sandbox::start(SandboxConfig::default(), "127.0.0.1:0".parse()?).await?;
        let mut config = ProvidersConfig::sandbox(&Url::parse(&sandbox.base_url())?);
        tweak(&mut config);
        let client = ProviderClient::new(&config)?;
        Ok(Self { sandbox, client })
    }

    /// Creates a payment that shows `raw` from the start (plus merged `fields`).
    fn payment(
        &self,
        provider: Provider,
        raw: &str,
        fields: Option<Value>,
    ) -> Result<PaymentId, Box<dyn Error>> {
        let spec = NewPayment::new(sandbox_provider(provider));
        let spec = match fields {
            Some(Value::Object(fields)) => spec.step_with_fields(0, raw, fields),
            Some(other) => return Err(format!("fields must be an object, got {other}").into()),
            None => spec.step(0, raw),
        };
        let created = self.sandbox.state().create_payment(spec)?;
        Ok(PaymentId::new(created.id)?)
    }

    fn fault(&self, provider: Provider, id: &PaymentId, fault: Fault) -> TestResult {
        self.sandbox.state().set_fault(
            FaultScope::Payment {
                provider: sandbox_provider(provider),
                id: id.to_string(),
            },
            fault,
        )?;
        Ok(())
    }

    async fn observe(
        &self,
        provider: Provider,
        id: &PaymentId,
    ) -> Result<Observation, Box<dyn Error>> {
        Ok(self.client.check(provider, id).await?)
    }

    async fn check(&self, provider: Provider, id: &PaymentId) -> Result<Observation, CheckError> {
        self.client.check(provider, id).await
    }
}

/// Asserts every `(raw, expected)` pair maps as expected when served by the sandbox.
async fn assert_mapping(
    env: &Env,
    provider: Provider,
    cases: &[(&str, PaymentStatus)],
) -> TestResult {
    for (raw, expected) in cases {
        let id = env.payment(provider, raw, None)?;
        let observation = env.observe(provider, &id).await?;
        assert_eq!(observation.status, *expected, "{provider} {raw}");
        assert_eq!(observation.raw_status, *raw, "{provider}");
    }
    Ok(())
}

#[tokio::test]
async fn cashless_statuses() -> TestResult {
    let env = Env::start().await?;
    assert_mapping(
        &env,
        Provider::Cashless,
        &[
            ("NOT_PAID", PaymentStatus::Pending),
            ("PARTIALLY_PAID", PaymentStatus::PartiallyPaid),
            ("FULLY_PAID", PaymentStatus::Paid),
            ("REFUNDED", PaymentStatus::Pending),
        ],
    )
    .await?;
    // Cashless's own guide reads `status.name`; the object form must work on the wire too.
    let id = env.payment(
        Provider::Cashless,
        "FULLY_PAID",
        Some(json!({"status": {"name": "FULLY_PAID"}})),
    )?;
    let observation = env.observe(Provider::Cashless, &id).await?;
    assert_eq!(observation.status, PaymentStatus::Paid);
    assert_eq!(observation.raw_status, "FULLY_PAID");
    Ok(())
}

#[tokio::test]
async fn handcash_statuses() -> TestResult {
    let env = Env::start().await?;
    assert_mapping(
        &env,
        Provider::HandCash,
        &[
            ("pending", PaymentStatus::Pending),
            ("paid", PaymentStatus::Paid),
            ("expired", PaymentStatus::Expired),
        ],
    )
    .await?;
    let id = env.payment(Provider::HandCash, "paid", None)?;
    let observation = env.observe(Provider::HandCash, &id).await?;
    let detail = observation.detail.unwrap_or_default();
    assert!(detail.starts_with("transactionId="), "{detail}");
    // Payment evidence decides, not the (unpublished) status string.
    let id = env.payment(
        Provider::HandCash,
        "pending",
        Some(json!({"transactionId": "cc066a86e4", "paymentsCount": 1})),
    )?;
    assert_eq!(
        env.observe(Provider::HandCash, &id).await?.status,
        PaymentStatus::Paid
    );
    Ok(())
}

#[tokio::test]
async fn miraclecash_statuses() -> TestResult {
    let env = Env::start().await?;
    assert_mapping(
        &env,
        Provider::MiracleCash,
        &[
            ("pending", PaymentStatus::Pending),
            ("successful", PaymentStatus::Paid),
            ("unsuccessful", PaymentStatus::Failed),
            ("expired", PaymentStatus::Expired),
            ("cancelled", PaymentStatus::Cancelled),
            ("confirming", PaymentStatus::Pending),
        ],
    )
    .await
}

#[tokio::test]
async fn foxreload_statuses_codes_and_reasons() -> TestResult {
    let env = Env::start().await?;
    assert_mapping(
        &env,
        Provider::FoxReload,
        &[
            ("active", PaymentStatus::Pending),
            ("paid", PaymentStatus::Processing),
            ("processing", PaymentStatus::Processing),
            ("completed", PaymentStatus::Paid),
            // The sandbox cancels with cancelReason=payment_expiration.
            ("cancelled", PaymentStatus::Expired),
            ("failed", PaymentStatus::Failed),
        ],
    )
    .await?;

    let id = env.payment(Provider::FoxReload, "completed", None)?;
    let observation = env.observe(Provider::FoxReload, &id).await?;
    assert!(!observation.delivered_codes.is_empty());
    assert!(
        observation
            .delivered_codes
            .iter()
            .all(|c| c.starts_with("FOX-")),
        "codes should come from items[].externalData[]"
    );
    let debug = format!("{observation:?}");
    for code in &observation.delivered_codes {
        assert!(!debug.contains(code.as_str()), "{debug}");
    }

    let id = env.payment(
        Provider::FoxReload,
        "cancelled",
        Some(json!({"cancelReason": "user_request"})),
    )?;
    let observation = env.observe(Provider::FoxReload, &id).await?;
    assert_eq!(observation.status, PaymentStatus::Cancelled);
    assert_eq!(
        observation.detail.as_deref(),
        Some("cancelReason=user_request")
    );

    let id = env.payment(Provider::FoxReload, "failed", None)?;
    let detail = env
        .observe(Provider::FoxReload, &id)
        .await?
        .detail
        .unwrap_or_default();
    assert!(detail.contains("out of stock"), "{detail}");
    Ok(())
}

#[tokio::test]
async fn wrong_credentials_are_unauthorized_and_never_echoed() -> TestResult {
    let wrong = "definitely-wrong-credential";
    let env = Env::start_with(|config| {
        if let Some(c) = config.cashless.as_mut() {
            c.api_secret = wrong.into();
        }
        if let Some(c) = config.handcash.as_mut() {
            c.app_secret = wrong.into();
        }
        if let Some(c) = config.miraclecash.as_mut() {
            c.api_key = wrong.into();
        }
        if let Some(c) = config.foxreload.as_mut() {
            c.api_key = wrong.into();
        }
    })
    .await?;
    for provider in Provider::ALL {
        let raw = sandbox_provider(provider).initial_status();
        let id = env.payment(provider, raw, None)?;
        match env.check(provider, &id).await {
            Err(error @ CheckError::Unauthorized(_)) => {
                let text = format!("{error} {error:?}");
                assert!(text.contains(provider.as_str()), "{text}");
                assert!(
                    text.contains("rejected the configured credentials"),
                    "{text}"
                );
                assert!(!text.contains(wrong), "{text}");
                assert!(error.is_permanent());
            }
            other => panic!("{provider}: expected Unauthorized, got {other:?}"),
        }
    }
    Ok(())
}

#[tokio::test]
async fn unknown_payments_are_not_found() -> TestResult {
    let env = Env::start().await?;
    let id = PaymentId::new("no-such-payment")?;
    for provider in Provider::ALL {
        match env.check(provider, &id).await {
            Err(CheckError::NotFound(message)) => {
                assert!(message.contains(provider.as_str()), "{message}");
            }
            other => panic!("{provider}: expected NotFound, got {other:?}"),
        }
    }
    // Cashless's error body names the bill; the message passes it on.
    match env.check(Provider::Cashless, &id).await {
        Err(CheckError::NotFound(message)) => {
            assert!(
                message.contains("Bill with id no-such-payment not found"),
                "{message}"
            );
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn rate_limits_carry_retry_after_and_then_clear() -> TestResult {
    let env = Env::start().await?;
    for provider in Provider::ALL {
        let raw = sandbox_provider(provider).initial_status();
        let id = env.payment(provider, raw, None)?;
        env.fault(provider, &id, Fault::rate_limited(2).times(1))?;
        match env.check(provider, &id).await {
            Err(error @ CheckError::RateLimited { .. }) => {
                assert_eq!(
                    error.retry_after(),
                    Some(Duration::from_secs(2)),
                    "{provider}"
                );
                assert!(!error.is_permanent());
            }
            other => panic!("{provider}: expected RateLimited, got {other:?}"),
        }
        // The fault was for one request only.
        assert_eq!(
            env.observe(provider, &id).await?.status,
            PaymentStatus::Pending
        );
    }
    Ok(())
}

#[tokio::test]
async fn malformed_bodies_are_malformed_and_redacted() -> TestResult {
    let env = Env::start().await?;
    for provider in Provider::ALL {
        let raw = sandbox_provider(provider).initial_status();
        let id = env.payment(provider, raw, None)?;
        env.fault(provider, &id, Fault::malformed().times(1))?;
        match env.check(provider, &id).await {
            Err(CheckError::Malformed { snippet }) => {
                assert!(!snippet.is_empty(), "{provider}");
                assert!(snippet.len() <= 120, "{provider}: {snippet}");
            }
            other => panic!("{provider}: expected Malformed, got {other:?}"),
        }
    }
    // A completed FoxReload order cut in half may still hold its codes; they must not leak.
    let id = env.payment(Provider::FoxReload, "completed", None)?;
    let codes = env.observe(Provider::FoxReload, &id).await?.delivered_codes;
    env.fault(Provider::FoxReload, &id, Fault::malformed().times(1))?;
    let error = env
        .check(Provider::FoxReload, &id)
        .await
        .err()
        .ok_or("malformed body should fail")?;
    let text = format!("{error} {error:?}");
    for code in &codes {
        assert!(!text.contains(code.as_str()), "{text}");
    }
    Ok(())
}

#[tokio::test]
async fn server_errors_and_dropped_connections_are_transient() -> TestResult {
    let env = Env::start().await?;
    let id = env.payment(Provider::MiracleCash, "pending", None)?;
    for fault in [
        Fault::status(500),
        Fault::status(502),
        Fault::status(503),
        Fault::drop_connection(),
    ] {
        env.fault(Provider::MiracleCash, &id, fault.clone().times(1))?;
        match env.check(Provider::MiracleCash, &id).await {
            Err(error @ CheckError::Transient(_)) => {
                assert!(!error.is_permanent());
                assert!(error.to_string().contains("miraclecash"), "{error}");
            }
            other => panic!("{fault:?}: expected Transient, got {other:?}"),
        }
    }
    // Provider-wide faults (the provider's edge failing) classify the same way.
    env.sandbox.state().set_fault(
        FaultScope::Provider(SandboxProvider::MiracleCash),
        Fault::status(504).times(1),
    )?;
    assert!(matches!(
        env.check(Provider::MiracleCash, &id).await,
        Err(CheckError::Transient(_))
    ));
    assert_eq!(
        env.observe(Provider::MiracleCash, &id).await?.status,
        PaymentStatus::Pending
    );
    Ok(())
}

#[tokio::test]
async fn slow_responses_time_out_as_transient() -> TestResult {
    let env = Env::start_with(|config| config.request_timeout = Duration::from_millis(300)).await?;
    let id = env.payment(Provider::FoxReload, "active", None)?;
    env.fault(Provider::FoxReload, &id, Fault::latency(5_000).times(1))?;
    let started = std::time::Instant::now();
    match env.check(Provider::FoxReload, &id).await {
        Err(CheckError::Transient(message)) => {
            assert!(message.contains("timed out"), "{message}");
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the timeout did not apply"
    );
    Ok(())
}

#[tokio::test]
async fn payments_scripted_over_the_admin_http_api_work_too() -> TestResult {
    let env = Env::start().await?;
    let admin = format!("{}/_admin/payments", env.sandbox.base_url());
    let response = reqwest::Client::new()
        .post(&admin)
        .json(&json!({
            "provider": "cashless",
            "id": "admin-bill-1",
            "timeline": [{"after_ms": 0, "status": "NOT_PAID"}],
            "faults": [{"kind": "status", "code": 429, "retry_after_s": 2, "times": 1}]
        }))
        .send()
        .await?;
    assert!(
        response.status().is_success(),
        "admin API said {}",
        response.status()
    );
    let id = PaymentId::new("admin-bill-1")?;
    assert_eq!(
        env.check(Provider::Cashless, &id).await,
        Err(CheckError::RateLimited {
            retry_after: Some(Duration::from_secs(2))
        })
    );
    assert_eq!(
        env.observe(Provider::Cashless, &id).await?.status,
        PaymentStatus::Pending
    );
    Ok(())
}

/// The adapter and the poll policy together: a scaled-down Cashless watch follows a bill
/// through partial payment to payment.
#[tokio::test]
async fn poll_loop_follows_a_bill_to_paid() -> TestResult {
    let env = Env::start().await?;
    let created = env.sandbox.state().create_payment(
        NewPayment::new(SandboxProvider::Cashless)
            .step(0, "NOT_PAID")
            .step(150, "PARTIALLY_PAID")
            .step(400, "FULLY_PAID"),
    )?;
    let id = PaymentId::new(created.id.clone())?;
    let policy = PollPolicies::with_time_scale(0.01).for_provider(Provider::Cashless);
    let mut state = PollState::new(&policy, chrono::Utc::now());

    let outcome = tokio::time::timeout(WAIT_LIMIT, async {
        let mut seen = Vec::new();
        loop {
            let result = env.check(Provider::Cashless, &id).await;
            if let Ok(observation) = &result {
                seen.push(observation.status);
            }
            match policy.next(&mut state, result.as_ref(), chrono::Utc::now()) {
                PollDecision::CheckAgainIn(delay) => tokio::time::sleep(delay).await,
                other => return (other, seen),
            }
        }
    })
    .await;
    let (decision, seen) = outcome.map_err(|_| "the poll loop did not finish in time")?;
    assert_eq!(
        decision,
        PollDecision::Terminal(PaymentStatus::Paid),
        "{seen:?}"
    );
    assert_eq!(seen.first(), Some(&PaymentStatus::Pending), "{seen:?}");
    assert!(state.checks >= 2, "{state:?}");
    let stats = env
        .sandbox
        .state()
        .stats(SandboxProvider::Cashless, &created.id)
        .ok_or("the sandbox lost the payment")?;
    assert_eq!(stats.checks, u64::from(state.checks));
    Ok(())
}
