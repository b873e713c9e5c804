//! Assertions on `template.yaml` that tie the stack to the code: what the Batch event
//! rule matches is what the code names its jobs.

use crate::domain::ids::{new_id, IdKind};
use crate::domain::lifecycle::JobName;

const TEMPLATE: &str = include_str!("../../template.yaml");

/// The values of every `key:` line in `block`, as written.
fn value_of<'a>(block: &'a str, key: &str) -> Vec<&'a str> {
    block
        .lines()
        .filter_map(|l| l.trim().strip_prefix(key))
        .map(str::trim)
        .collect()
}

/// The text of a resource of the template (from its name to the next resource).
fn resource(name: &str) -> &'static str {
    let start = TEMPLATE
        .find(&format!("\n  {name}:\n"))
        .unwrap_or_else(|| panic!("no resource {name}"));
    let rest = &TEMPLATE[start + 1..];
    let next = rest.match_indices('\n').map(|(i, _)| i).find(|&i| {
        let line = &rest.as_bytes()[i + 1..];
        line.len() > 2 && line[..2] == *b"  " && !matches!(line[2], b' ' | b'#')
    });
    &rest[..next.unwrap_or(rest.len())]
}

/// The per-stack job-name prefix, as the stack computes it: "studios-" and the first
/// group of the stack id's UUID.
const PREFIX_EXPR: &str = r#"!Sub ["studios-${Id}", {Id: !Select [0, !Split ["-", !Select [2, !Split ["/", !Ref "AWS::StackId"]]]]}]"#;

/// What `PREFIX_EXPR` gives for a stack id.
fn evaluate_prefix(stack_id: &str) -> String {
    let uuid = stack_id.split('/').nth(2).expect("stack/<name>/<uuid>");
    format!("studios-{}", uuid.split('-').next().unwrap())
}

#[test]
fn the_batch_event_rule_matches_job_names_not_tags() {
    let rule = resource("BatchEventsFunction");
    let pattern = &rule[rule.find("Pattern:").expect("the rule has a pattern")..];
    let pattern = &pattern[..pattern.find("RetryPolicy:").unwrap_or(pattern.len())];
    let pattern: String = pattern
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    let pattern = pattern.as_str();
    assert!(
        !pattern.contains("tags"),
        "the rule must not filter on job tags:\n{pattern}"
    );
    assert_eq!(value_of(pattern, "jobQueue:"), ["!Ref JobQueueArns"]);
    // The rule's prefix is the functions' JOB_NAME_PREFIX followed by "-".
    let env = value_of(TEMPLATE, "JOB_NAME_PREFIX:");
    assert_eq!(env, [PREFIX_EXPR], "the functions' JOB_NAME_PREFIX");
    let rule_prefix = PREFIX_EXPR.replacen("studios-${Id}", "studios-${Id}-", 1);
    assert_eq!(
        value_of(pattern, "jobName:"),
        [format!("[{{prefix: {rule_prefix}}}]").as_str()]
    );

    // And the code names every job so that the rule matches it, and reads it back.
    let stack_id =
        "arn:aws:cloudformation:eu-west-1:123456789012:stack/studios/3f2a1b4c-5d6e-11ef-8a7b-0a1b2c3d4e5f";
    let prefix = evaluate_prefix(stack_id);
    assert_eq!(prefix, "studios-3f2a1b4c");
    let config = crate::config::Config::from_lookup(|k| match k {
        "JOB_NAME_PREFIX" => Some(prefix.clone()),
        "TABLE_NAME" | "EVENT_BUS_NAME" => Some("x".into()),
        "CONNECT_URL_PATTERN" => Some("https://x/{studioId}".into()),
        k if k.starts_with("TEMPLATE_IMAGE_") => Some("img".into()),
        _ => None,
    })
    .expect("a stack's prefix is a valid JOB_NAME_PREFIX");
    let (ws, st) = (new_id(IdKind::Workspace), new_id(IdKind::Studio));
    let attempt = uuid::Uuid::now_v7().simple().to_string();
    let name = JobName::format(&config.job_name_prefix, &ws, &st, &attempt);
    assert!(name.starts_with(&format!("{prefix}-")), "{name}");
    assert!(name.len() <= 128);
    assert_eq!(JobName::parse(&name).unwrap().prefix, prefix);
}

#[test]
fn the_alerts_topic_is_encrypted_with_a_key_eventbridge_may_use() {
    let alerts = include_str!("../../infra/alerts.yaml");
    // EventBridge cannot publish to a topic under the AWS-managed SNS key.
    assert_eq!(value_of(alerts, "KmsMasterKeyId:"), ["!Ref AlertKey"]);
    let key = &alerts[alerts.find("  AlertKey:").expect("a key of the stack")..];
    let grant = &key[key.find("Sid: EventBridgePublishes").expect("a grant")..];
    let grant = &grant[..grant.find("  AlertTopic:").unwrap_or(grant.len())];
    assert!(grant.contains("Service: events.amazonaws.com"));
    assert!(grant.contains("kms:GenerateDataKey") && grant.contains("kms:Decrypt"));
}

#[test]
fn the_dead_letter_queue_takes_the_rule_by_arn_and_alarms() {
    let policy = resource("DeadLetterQueuePolicy");
    assert_eq!(
        value_of(policy, "aws:SourceArn:"),
        ["!GetAtt BatchEventsFunctionJobStateChange.Arn"],
        "a rule name prefix can miss SAM's generated rule name"
    );
    // SAM names the rule <function><event>: the event must be called JobStateChange.
    assert!(resource("BatchEventsFunction").contains("        JobStateChange:\n"));
    let alarm = resource("DeadLetterQueueAlarm");
    assert!(alarm.contains("Type: AWS::CloudWatch::Alarm"));
    assert_eq!(
        value_of(alarm, "Value:"),
        ["!GetAtt DeadLetterQueue.QueueName"]
    );
    assert_eq!(value_of(alarm, "Threshold:"), ["0"]);
}

#[test]
fn job_definitions_are_named_as_the_policies_allow() {
    // The functions name definitions `<JOB_DEFINITION_PREFIX>-<16 hex>`; the submitting
    // roles may register, submit with and tag only `job-definition/studios-<id>-def-*`.
    let id = r#"!Select [0, !Split ["-", !Select [2, !Split ["/", !Ref "AWS::StackId"]]]]"#;
    assert_eq!(
        value_of(TEMPLATE, "JOB_DEFINITION_PREFIX:"),
        [format!(r#"!Sub ["studios-${{Id}}-def", {{Id: {id}}}]"#).as_str()]
    );
    for function in [
        "AddStudioFunction",
        "StartStudioFunction",
        "CloneStudioFunction",
    ] {
        let block = resource(function);
        assert_eq!(
            block.matches("job-definition/studios-${Id}-def-*").count(),
            3,
            "{function}"
        );
        assert!(
            !block.contains("job-definition/${AWS::StackName}"),
            "{function}"
        );
    }
    // Short whatever the stack name: "studios-" + 8 hex + "-def-" + 16 hex.
    let name_len = "studios-".len() + 8 + "-def-".len() + 16;
    assert!(name_len <= 128);
}

#[test]
fn logs_are_kept_for_a_set_time_and_the_api_is_throttled() {
    let globals =
        &TEMPLATE[TEMPLATE.find("\nGlobals:").unwrap()..TEMPLATE.find("\nResources:").unwrap()];
    assert_eq!(value_of(globals, "LogGroup:"), ["!Ref FunctionLogGroup"]);
    for group in ["FunctionLogGroup", "ApiAccessLogGroup"] {
        assert_eq!(
            value_of(resource(group), "RetentionInDays:"),
            ["!Ref LogRetentionDays"]
        );
    }
    let api = resource("Api");
    assert_eq!(
        value_of(api, "ThrottlingRateLimit:"),
        ["!Ref ApiThrottlingRateLimit"]
    );
    assert_eq!(
        value_of(api, "DestinationArn:"),
        ["!GetAtt ApiAccessLogGroup.Arn"]
    );
    assert!(api.contains("CorsConfiguration: !If"));
    // No function sets its own log group (each would then keep logs forever).
    assert_eq!(TEMPLATE.matches("LogGroup: !Ref").count(), 1);
}

#[test]
fn parameters_refuse_what_is_not_a_queue_or_bucket() {
    for parameter in [
        "JobQueueArns",
        "CheckpointBuckets",
        "DataBuckets",
        "WriteBuckets",
    ] {
        assert!(
            !value_of(resource(parameter), "AllowedPattern:").is_empty(),
            "{parameter}"
        );
    }
}

#[test]
fn sessions_get_per_compute_environment_roles_the_stack_may_pass() {
    let role = resource("StudioJobRole");
    assert!(role.contains("aws:SourceAccount: !Ref AWS::AccountId"));
    // The default role reads data buckets only: no checkpoint or write-bucket access.
    assert!(
        !role.contains("s3:PutObject") && !role.contains("s3:DeleteObject"),
        "{role}"
    );
    for function in [
        "AddStudioFunction",
        "StartStudioFunction",
        "CloneStudioFunction",
    ] {
        let block = resource(function);
        let pass = &block[block.find("[iam:PassRole]").expect(function)..];
        let pass = &pass[..pass.find("Events:").unwrap_or(pass.len())];
        assert!(pass.contains("- !GetAtt StudioJobRole.Arn"), "{function}");
        assert!(
            pass.contains(r#"role${SessionRolePath}*""#),
            "{function}: only roles under the session path"
        );
    }
    assert_eq!(
        value_of(TEMPLATE, "SESSION_ROLE_PATH:"),
        ["!Ref SessionRolePath"]
    );
}

#[test]
fn event_consumers_have_reserved_concurrency() {
    for function in ["BatchEventsFunction", "TableStreamFunction"] {
        assert_eq!(
            value_of(resource(function), "ReservedConcurrentExecutions:"),
            ["!If [ReservesConcurrency, !Ref EventConsumerReservedConcurrency, !Ref AWS::NoValue]"],
            "{function}"
        );
    }
}

#[test]
fn released_data_is_deleted_by_its_own_worker_and_locks_reach_the_stream() {
    let stream = resource("TableStreamFunction");
    // The stream consumer only enqueues: it may not delete from S3 itself.
    assert!(!stream.contains("s3:DeleteObject"), "{stream}");
    assert!(stream.contains("!GetAtt CleanupQueue.Arn"));
    // Lock records must pass the stream's filter, or released lock items pile up.
    let filter = value_of(stream, "- Pattern:");
    assert!(filter[0].contains(r#"{"prefix": "LOCK#"}"#), "{filter:?}");
    let worker = resource("CleanupFunction");
    assert_eq!(
        value_of(worker, "Handler:"),
        [crate::cleanup::CLEANUP_HANDLER]
    );
    assert!(worker.contains("s3:DeleteObject"));
    assert_eq!(value_of(worker, "BatchSize:"), ["1"]);
    assert!(resource("CleanupQueue")
        .contains("deadLetterTargetArn: !GetAtt CleanupDeadLetterQueue.Arn"));
    assert!(resource("CleanupDeadLetterQueueAlarm")
        .contains("!GetAtt CleanupDeadLetterQueue.QueueName"));
}

#[test]
fn sessions_may_use_the_buckets_kms_key_when_one_is_given() {
    let role = resource("StudioJobRole");
    let grant = &role[role.find("HasBucketKey").expect("a conditional key grant")..];
    assert!(
        grant.contains("[kms:Decrypt, kms:GenerateDataKey]"),
        "{grant}"
    );
    assert!(grant.contains("Resource: !Ref BucketKmsKeyArn"), "{grant}");
}

#[test]
fn no_arn_names_a_partition_literally() {
    // Everything takes ${AWS::Partition}; bucket ARNs, built from a list (CloudFormation's
    // Fn::Join cannot take the partition as its delimiter), match any partition with
    // `arn:*:s3:::` — bucket names are unique within a partition, and a stack only ever
    // runs in its own.
    for (name, text) in [
        ("template.yaml", TEMPLATE),
        ("alerts.yaml", include_str!("../../infra/alerts.yaml")),
    ] {
        assert!(!text.contains("arn:aws:"), "{name} names the aws partition");
    }
}

#[test]
fn only_the_open_routes_skip_the_jwt_authorizer() {
    use crate::http::{ROUTES, UNAUTHORIZED_ROUTES};
    for (action, handler, _, _) in ROUTES {
        let name: String = handler
            .split('-')
            .map(|w| w[..1].to_uppercase() + &w[1..])
            .collect::<String>()
            + "Function";
        let open = resource(&name).contains("Authorizer: NONE");
        assert_eq!(open, UNAUTHORIZED_ROUTES.contains(action), "{name}");
    }
    assert!(TEMPLATE.contains("STOP_GRACE_SECONDS: !Ref StopGraceSeconds"));
}

#[test]
fn template_images_default_to_the_stacks_own_repositories() {
    assert!(!TEMPLATE.contains("public.ecr.aws/studios"));
    for kind in ["Jupyter", "Rstudio", "Vscode", "Xpra"] {
        let upper = kind.to_uppercase();
        let env = format!(
            "TEMPLATE_IMAGE_{upper}: !If [Has{kind}Image, !Ref TemplateImage{kind}, !Sub \"${{{kind}Repository.RepositoryUri}}:latest\"]"
        );
        assert!(TEMPLATE.contains(&env), "{env}");
        assert!(resource(&format!("{kind}Repository")).contains("AWS::ECR::Repository"));
        assert!(std::path::Path::new(&format!(
            "{}/../images/{}/Dockerfile",
            env!("CARGO_MANIFEST_DIR"),
            kind.to_lowercase()
        ))
        .exists());
    }
}

#[test]
fn connect_links_are_signed_by_the_stacks_kms_key() {
    let key = resource("ConnectSigningKey");
    assert!(key.contains("KeySpec: ECC_NIST_P256") && key.contains("KeyUsage: SIGN_VERIFY"));
    assert!(TEMPLATE.contains("CONNECT_SIGNING_KEY_ID: !GetAtt ConnectSigningKey.Arn"));
    assert!(resource("ConnectStudioFunction").contains("Action: [kms:Sign]"));
    for f in [
        "AddStudioFunction",
        "StartStudioFunction",
        "CloneStudioFunction",
    ] {
        assert!(resource(f).contains("Action: [kms:GetPublicKey]"), "{f}");
    }
}

#[test]
fn the_relay_is_deployed_with_a_domain_and_sessions_tunnel_to_it() {
    assert!(TEMPLATE.contains(
        "RELAY_TUNNEL_ADDR: !If [DeploysRelay, !Sub \"tls://${RelayDomain}:8443\", \"\"]"
    ));
    for name in [
        "RelayService",
        "RelayLoadBalancer",
        "RelayPublicListener",
        "RelayTunnelListener",
        "RelayTaskDefinition",
    ] {
        assert!(resource(name).contains("Condition: DeploysRelay"), "{name}");
    }
    let task_role = resource("RelayTaskRole");
    assert!(task_role.contains("Action: [kms:GetPublicKey]") && !task_role.contains("kms:Sign"));
    assert!(resource("RelayPublicListener").contains("Port: 443"));
    assert!(resource("RelayTunnelListener").contains("Port: 8443"));
    assert!(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../images/relay/Dockerfile"
    ))
    .exists());
}
