//! Assertions on `template.yaml` (and the templates beside it in infra/) that tie the
//! stack to the code: what the Batch event rule matches is what the code names its jobs,
//! what each role may do is what its code calls.

use crate::clock::new_id;
use crate::domain::ids::IdKind;
use crate::domain::lifecycle::JobName;

const TEMPLATE: &str = include_str!("../../template.yaml");
const REGISTRY: &str = include_str!("../../infra/registry.yaml");
const SESSION_ROLE: &str = include_str!("../../infra/session-role.yaml");

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
    resource_in(TEMPLATE, name)
}

/// The text of a resource (or parameter, output) of `template`, up to the next one.
fn resource_in(template: &'static str, name: &str) -> &'static str {
    let start = template
        .find(&format!("\n  {name}:\n"))
        .unwrap_or_else(|| panic!("no resource {name}"));
    let rest = &template[start + 1..];
    let next = rest.match_indices('\n').map(|(i, _)| i).find(|&i| {
        let line = &rest.as_bytes()[i + 1..];
        line.len() > 2 && line[..2] == *b"  " && !matches!(line[2], b' ' | b'#')
    });
    &rest[..next.unwrap_or(rest.len())]
}

/// The `Effect: Allow` statements of `block`: (its Action line, its Resource: the rest of
/// its line and the lines indented below it), comments left out, in order.
fn grants(block: &str) -> Vec<(String, String)> {
    let indent = |l: &str| l.len() - l.trim_start().len();
    block
        .split("- Effect: Allow")
        .skip(1)
        .map(|statement| {
            let lines: Vec<&str> = statement
                .lines()
                .filter(|l| !l.trim_start().starts_with('#'))
                .collect();
            let action = value_of(&lines.join("\n"), "Action:")
                .first()
                .map(|a| a.to_string())
                .unwrap_or_default();
            let mut resource = String::new();
            if let Some(at) = lines
                .iter()
                .position(|l| l.trim_start().starts_with("Resource:"))
            {
                let key = indent(lines[at]);
                resource.push_str(lines[at].trim_start()["Resource:".len()..].trim());
                for l in lines[at + 1..]
                    .iter()
                    .take_while(|l| indent(l) > key && !l.trim().is_empty())
                {
                    resource.push('\n');
                    resource.push_str(l.trim());
                }
            }
            (action, resource.trim().to_string())
        })
        .collect()
}

/// The resources `block` grants `action` on (every statement whose Action list has it).
fn granted(block: &str, action: &str) -> Vec<String> {
    grants(block)
        .into_iter()
        .filter(|(actions, _)| {
            actions
                .trim_matches(['[', ']'])
                .split(',')
                .any(|a| a.trim() == action)
        })
        .map(|(_, resource)| resource)
        .collect()
}

/// IAM's `*` wildcard (any characters, `/` included), as in a resource ARN.
fn iam_matches(pattern: &str, value: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == value,
        Some((head, tail)) => {
            value.starts_with(head)
                && (0..=value.len() - head.len())
                    .any(|i| iam_matches(tail, &value[head.len() + i..]))
        }
    }
}

/// The functions that submit session jobs (SubmitJob, RegisterJobDefinition, PassRole).
const SUBMITTERS: [&str; 3] = [
    "AddStudioFunction",
    "StartStudioFunction",
    "CloneStudioFunction",
];

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
    for parameter in ["JobQueueArns", "CheckpointBuckets", "WriteBuckets"] {
        assert!(
            !value_of(resource(parameter), "AllowedPattern:").is_empty(),
            "{parameter}"
        );
    }
    for parameter in [
        "WorkspaceId",
        "WorkDir",
        "DataBuckets",
        "WriteBuckets",
        "BucketKmsKeyArn",
    ] {
        assert!(
            !value_of(resource_in(SESSION_ROLE, parameter), "AllowedPattern:").is_empty(),
            "session-role.yaml {parameter}"
        );
    }
}

#[test]
fn sessions_get_their_workspaces_role_and_the_stack_passes_only_those() {
    // No stack-wide session role: every compute environment names its workspace's role.
    assert!(!TEMPLATE.contains("StudioJobRole"));
    assert!(!TEMPLATE.contains("JOB_ROLE_ARN"));
    for function in SUBMITTERS {
        assert_eq!(
            granted(resource(function), "iam:PassRole"),
            [r#"!Sub "arn:${AWS::Partition}:iam::${AWS::AccountId}:role${SessionRolePath}*""#],
            "{function}: only roles under the session path"
        );
    }
    assert_eq!(
        value_of(TEMPLATE, "SESSION_ROLE_PATH:"),
        ["!Ref SessionRolePath"]
    );
    // infra/session-role.yaml puts the role where the stack's check wants it:
    // <SessionRolePath><workspace id>/, under the path PassRole allows.
    let role = resource_in(SESSION_ROLE, "SessionRole");
    assert_eq!(
        value_of(role, "Path:"),
        [r#"!Sub "${SessionRolePath}${WorkspaceId}/""#]
    );
    assert_eq!(
        value_of(resource_in(SESSION_ROLE, "SessionRolePath"), "Default:"),
        value_of(resource("SessionRolePath"), "Default:")
    );
    assert!(role.contains("Principal: {Service: ecs-tasks.amazonaws.com}"));
    assert!(role.contains("aws:SourceAccount: !Ref AWS::AccountId"));
    assert_eq!(
        value_of(resource_in(SESSION_ROLE, "RoleArn"), "Value:"),
        ["!GetAtt SessionRole.Arn"]
    );
}

#[test]
fn a_session_role_reaches_exactly_its_workdirs_checkpoints() {
    let role = resource_in(SESSION_ROLE, "SessionRole");
    let policy = &role[role
        .find("PolicyName: checkpoints")
        .expect("a checkpoint policy")..];
    let policy = &policy[..policy.find("- !If").unwrap_or(policy.len())];
    // What the agent calls (agent/src/objects.rs): GetObject and PutObject, nothing else.
    let statements = grants(policy);
    assert_eq!(statements.len(), 1, "{policy}");
    assert_eq!(statements[0].0, "[s3:GetObject, s3:PutObject]");
    let sub = r#""arn:${AWS::Partition}:s3:::${Path}.studios/*""#;
    let path = r#"Path: !Select [1, !Split ["s3://", !Ref WorkDir]]"#;
    assert!(policy.contains(sub) && policy.contains(path), "{policy}");
    // The template's expression, evaluated for a workDir as Studios normalises it.
    let arn = |work_dir: &str| {
        let path = work_dir.split("s3://").nth(1).unwrap();
        format!("arn:aws:s3:::{path}.studios/*")
    };
    let object = |uri: &str| format!("arn:aws:s3:::{}", uri.trim_start_matches("s3://"));
    let studio = |work_dir: &str| -> crate::domain::Studio {
        serde_json::from_value(serde_json::json!({
            "id": new_id(IdKind::Studio), "workspaceId": new_id(IdKind::Workspace),
            "name": "QC", "description": "", "template": {"kind": "jupyter"},
            "condaPackages": [], "resources": {"cpus": 2, "gpus": 0, "memoryMiB": 8192},
            "mounts": [],
            "computeEnv": {"id": "ce-1", "name": "ce", "region": "eu-west-1",
                "jobQueue": "q", "gpuEnabled": false, "maxCpus": 4, "maxMemoryMiB": 16384,
                "allowedWriteBuckets": [], "workDir": work_dir},
            "status": "stopped", "statusReason": null, "statusUpdatedAt": "t0",
            "author": {"id": "ada", "name": "Ada"}, "createdAt": "t0", "updatedAt": "t0",
            "lastStartedAt": null, "parent": null, "version": 1
        }))
        .expect("a studio")
    };
    let other_team = crate::domain::S3Prefix::parse("s3://ckpt/other-team/").unwrap();
    for given in ["s3://ckpt/genomics", "s3://ckpt/a/b/", "s3://ckpt"] {
        let work_dir = crate::domain::S3Prefix::parse(given).unwrap();
        let grant = arn(work_dir.as_str());
        let own = studio(work_dir.as_str()).data_prefix();
        let source = studio(work_dir.as_str()).data_prefix();
        // Every key a session writes or reads: its chunks and checkpoints, and (a
        // clone's history) its source's chunks, on the same workDir.
        for key in [
            format!("{}0a1b2c", own.child("chunks").as_str()),
            format!(
                "{}manifest.json",
                own.child("checkpoints").child("cp-1").as_str()
            ),
            format!("{}ff00", source.child("chunks").as_str()),
        ] {
            assert!(
                iam_matches(&grant, &object(&key)),
                "{grant} must cover {key}"
            );
        }
        // Not the workDir's other objects.
        let beside = format!("{}notes.txt", work_dir.as_str());
        assert!(!iam_matches(&grant, &object(&beside)), "{grant}: {beside}");
        // Nor another workDir's checkpoints in the same bucket (even from the bucket's
        // root: the grant starts at <workDir>.studios/).
        let theirs = format!("{}x", studio(other_team.as_str()).data_prefix().as_str());
        assert!(!iam_matches(&grant, &object(&theirs)), "{grant}: {theirs}");
    }
    // Never a delete: released data is the control plane's to delete (CleanupFunction).
    assert!(!policy.contains("s3:DeleteObject"));
}

#[test]
fn event_consumers_reserve_concurrency_only_when_asked() {
    for function in ["BatchEventsFunction", "TableStreamFunction"] {
        assert_eq!(
            value_of(resource(function), "ReservedConcurrentExecutions:"),
            ["!If [ReservesConcurrency, !Ref EventConsumerReservedConcurrency, !Ref AWS::NoValue]"],
            "{function}"
        );
    }
    // Lambda keeps 100 unreserved: any reservation fails on accounts below 100 + 2N, so
    // the default reserves nothing and deploys anywhere.
    let parameter = resource("EventConsumerReservedConcurrency");
    assert_eq!(value_of(parameter, "Default:"), ["0"]);
    assert!(TEMPLATE.contains(
        "ReservesConcurrency: !Not [!Equals [!Ref EventConsumerReservedConcurrency, 0]]"
    ));
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
    let role = resource_in(SESSION_ROLE, "SessionRole");
    let grant = &role[role
        .find("- HasBucketKey")
        .expect("a conditional key grant")..];
    assert_eq!(
        granted(grant, "kms:Decrypt"),
        granted(grant, "kms:GenerateDataKey")
    );
    assert_eq!(granted(grant, "kms:Decrypt"), ["!Ref BucketKmsKeyArn"]);
    // mount-s3's read-write mounts: multipart writes and deletes (--allow-delete).
    let write = &role[role.find("- HasWriteBuckets").expect("write buckets")..];
    let write = &write[..write.find("- HasBucketKey").unwrap()];
    for action in [
        "s3:ListBucket",
        "s3:GetObject",
        "s3:PutObject",
        "s3:AbortMultipartUpload",
        "s3:DeleteObject",
    ] {
        assert_eq!(granted(write, action).len(), 1, "{action}");
    }
    let data = &role[role.find("- HasDataBuckets").expect("data buckets")..];
    let data = &data[..data.find("- HasWriteBuckets").unwrap()];
    for action in ["s3:ListBucket", "s3:GetObject"] {
        assert_eq!(granted(data, action).len(), 1, "{action}");
    }
    assert!(!data.contains("s3:PutObject") && !data.contains("s3:DeleteObject"));
}

#[test]
fn a_forced_stop_may_release_locks_and_read_the_manifest() {
    // Stop::Force ends the session as an event would (sessions::finish_as): the
    // studio's transaction releases its lock items and records the checkpoint after a
    // HeadObject of its manifest — the same grants as batch-events.
    let stop = resource("StopStudioFunction");
    for action in [
        "dynamodb:BatchGetItem",
        "dynamodb:ConditionCheckItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
    ] {
        assert_eq!(granted(stop, action), ["!GetAtt Table.Arn"], "{action}");
    }
    let events = resource("BatchEventsFunction");
    for action in ["s3:GetObject", "s3:ListBucket"] {
        assert_eq!(granted(stop, action), granted(events, action), "{action}");
        assert_eq!(granted(stop, action).len(), 1, "{action}");
    }
    assert!(granted(stop, "s3:GetObject")[0].contains("/*.studios/*"));
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
        ("registry.yaml", REGISTRY),
        ("session-role.yaml", SESSION_ROLE),
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
fn template_images_come_from_the_registry_stack() {
    // The stack owns no repository: its images exist before it does (no circular step).
    assert!(!TEMPLATE.contains("AWS::ECR::Repository"));
    assert!(!TEMPLATE.contains("public.ecr.aws/studios"));
    for kind in ["Jupyter", "Rstudio", "Vscode", "Xpra", "Relay"] {
        let repository = resource_in(REGISTRY, &format!("{kind}Repository"));
        assert!(repository.contains("Type: AWS::ECR::Repository"), "{kind}");
        assert!(
            repository.contains("ImageTagMutability: IMMUTABLE"),
            "{kind}"
        );
        assert!(repository.contains("ScanOnPush: true"), "{kind}");
        assert!(
            repository.contains(r#""countType":"imageCountMoreThan","countNumber":${KeepImages}"#)
        );
        assert_eq!(
            value_of(
                resource_in(REGISTRY, &format!("{kind}RepositoryUri")),
                "Value:"
            ),
            [format!("!GetAtt {kind}Repository.RepositoryUri").as_str()]
        );
        assert!(std::path::Path::new(&format!(
            "{}/../images/{}/Dockerfile",
            env!("CARGO_MANIFEST_DIR"),
            kind.to_lowercase()
        ))
        .exists());
        if kind == "Relay" {
            continue;
        }
        let env = format!(
            "TEMPLATE_IMAGE_{}: !Ref TemplateImage{kind}",
            kind.to_uppercase()
        );
        assert!(TEMPLATE.contains(&env), "{env}");
        // Required: the functions' configuration refuses an empty image (config.rs).
        let parameter = resource(&format!("TemplateImage{kind}"));
        assert!(value_of(parameter, "Default:").is_empty(), "{parameter}");
        assert_eq!(value_of(parameter, "MinLength:"), ["1"]);
    }
    let config = |xpra: &str| {
        crate::config::Config::from_lookup(|k| match k {
            "TABLE_NAME" | "EVENT_BUS_NAME" => Some("x".into()),
            "CONNECT_URL_PATTERN" => Some("https://x/{studioId}".into()),
            "TEMPLATE_IMAGE_XPRA" => Some(xpra.into()),
            k if k.starts_with("TEMPLATE_IMAGE_") => Some("img".into()),
            _ => None,
        })
    };
    assert!(config("x:1").is_ok());
    assert!(
        config("").is_err(),
        "the configuration accepts an empty template image now: TemplateImage* may default to empty (say what it means)"
    );
}

#[test]
fn connect_links_and_relay_tokens_are_signed_by_keys_of_their_own() {
    for name in ["ConnectSigningKey", "RelayTokenKey"] {
        let key = resource(name);
        assert!(
            key.contains("KeySpec: ECC_NIST_P256") && key.contains("KeyUsage: SIGN_VERIFY"),
            "{name}"
        );
    }
    assert!(resource("RelayTokenKey").contains("Condition: DeploysRelay"));
    assert!(TEMPLATE.contains("CONNECT_SIGNING_KEY_ID: !GetAtt ConnectSigningKey.Arn"));
    assert!(TEMPLATE
        .contains(r#"RELAY_TOKEN_KEY_ID: !If [DeploysRelay, !GetAtt RelayTokenKey.Arn, ""]"#));
    // Connect links: signed by the connect function only, with the connect key only.
    assert_eq!(
        granted(resource("ConnectStudioFunction"), "kms:Sign"),
        ["!GetAtt ConnectSigningKey.Arn"]
    );
    for f in SUBMITTERS {
        let block = resource(f);
        // A start signs nothing: the connect key's public half for the agent's
        // environment only (relay tokens come over the agent channel).
        assert!(granted(block, "kms:Sign").is_empty(), "{f}");
        assert_eq!(
            granted(block, "kms:GetPublicKey"),
            ["!GetAtt ConnectSigningKey.Arn"],
            "{f}"
        );
    }
    // Live sessions' relay tokens: the agent channel signs them, with the relay key
    // only, and only with the relay deployed.
    let report = resource("AgentReportFunction");
    assert_eq!(granted(report, "kms:Sign"), ["!GetAtt RelayTokenKey.Arn"]);
    assert!(report.contains("- !If\n              - DeploysRelay"));
    // No other function signs anything.
    assert_eq!(TEMPLATE.matches("Action: [kms:Sign]").count(), 2);
}

#[test]
fn the_relay_is_deployed_with_a_domain_and_sessions_tunnel_to_it() {
    assert!(TEMPLATE.contains(
        "RELAY_TUNNEL_ADDR: !If [DeploysRelay, !Sub \"tls://${RelayDomain}:8443\", \"\"]"
    ));
    // The relay routes browsers by Host, each studio its own origin under the connect
    // domain: the default pattern with a relay, a wildcard name and certificate for it.
    assert!(TEMPLATE.contains(
        r#"CONNECT_URL_PATTERN: !If [HasConnectUrlPattern, !Ref ConnectUrlPattern, !If [DeploysRelay, !Sub "https://{studioId}.${ConnectDomain}/", ""]]"#
    ));
    assert!(!TEMPLATE.contains("/connect/{studioId}"));
    assert!(resource("RelayTaskDefinition")
        .contains("{Name: RELAY_CONNECT_DOMAIN, Value: !Ref ConnectDomain}"));
    assert!(resource("ConnectCertificate").contains(r#"DomainName: !Sub "*.${ConnectDomain}""#));
    assert!(resource("ConnectDnsRecord").contains(r#"Name: !Sub "*.${ConnectDomain}.""#));
    assert!(resource("RelayPublicListener")
        .contains("Certificates: [{CertificateArn: !Ref ConnectCertificate}]"));
    for name in [
        "RelayService",
        "RelayLoadBalancer",
        "RelayPublicListener",
        "RelayTunnelListener",
        "RelayTaskDefinition",
        "RelaySecurityGroup",
        "RelayLoadBalancerSecurityGroup",
        "RelayLoadBalancerToTask",
        "ConnectCertificate",
        "ConnectDnsRecord",
    ] {
        assert!(resource(name).contains("Condition: DeploysRelay"), "{name}");
    }
    // Its token key's public half only (never the connect key, never Sign).
    let task_role = resource("RelayTaskRole");
    assert_eq!(
        granted(task_role, "kms:GetPublicKey"),
        ["!GetAtt RelayTokenKey.Arn"]
    );
    assert!(!task_role.contains("kms:Sign") && !task_role.contains("ConnectSigningKey"));
    let task = resource("RelayTaskDefinition");
    assert!(task.contains("{Name: RELAY_TOKEN_KEY_ID, Value: !GetAtt RelayTokenKey.Arn}"));
    assert!(!task.contains("CONNECT_SIGNING_KEY_ID"));
    assert_eq!(value_of(task, "Image:"), ["!Ref RelayImage"]);
    // ... which CloudFormation requires with RelayDomain before it creates anything.
    let rules = &TEMPLATE[TEMPLATE.find("\nRules:\n").expect("Rules")..];
    let rules = &rules[..rules.find("\nConditions:\n").unwrap()];
    assert!(rules.contains(r#"RuleCondition: !Not [!Equals [!Ref RelayDomain, ""]]"#));
    for required in ["RelayImage", "RelayCertificateArn", "RelayVpcId"] {
        assert!(
            rules.contains(&format!(r#"Assert: !Not [!Equals [!Ref {required}, ""]]"#)),
            "{required}"
        );
    }
    for required in ["RelaySubnetIds", "RelayTaskSubnetIds"] {
        assert!(
            rules.contains(&format!(
                r#"Assert: !Not [!Contains [!Ref {required}, ""]]"#
            )),
            "{required}"
        );
    }
    assert!(resource("RelayPublicListener").contains("Port: 443"));
    assert!(resource("RelayTunnelListener").contains("Port: 8443"));
    // Not on the internet: no public IP, private subnets, and the task's plaintext ports
    // open only to the load balancer's security group.
    let service = resource("RelayService");
    assert_eq!(value_of(service, "AssignPublicIp:"), ["DISABLED"]);
    assert_eq!(value_of(service, "Subnets:"), ["!Ref RelayTaskSubnetIds"]);
    let task_group = resource("RelaySecurityGroup");
    let ingress = &task_group[task_group.find("SecurityGroupIngress:").unwrap()
        ..task_group.find("SecurityGroupEgress:").unwrap()];
    assert!(!ingress.contains("CidrIp"), "{ingress}");
    assert!(
        ingress.contains("SourceSecurityGroupId: !GetAtt RelayLoadBalancerSecurityGroup.GroupId")
    );
    assert!(resource("RelayLoadBalancer")
        .contains("SecurityGroups: [!GetAtt RelayLoadBalancerSecurityGroup.GroupId]"));
    let lb_group = resource("RelayLoadBalancerSecurityGroup");
    for port in ["443", "8443"] {
        assert!(
            lb_group.contains(&format!("FromPort: {port}, ToPort: {port}")),
            "{port}"
        );
    }
    assert!(!lb_group.contains("8080"));
    assert!(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../images/relay/Dockerfile"
    ))
    .exists());
}
