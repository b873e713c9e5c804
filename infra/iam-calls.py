"""IAM by calls (docs/iam.md, "Checked against the calls the code makes"): every AWS
call the integration tests saw a function make (tests/support/iam.rs writes them to the
file STUDIOS_IAM_CALLS names), checked against that function's role in the expanded
template, as IAM would decide it.

    .venv/bin/python infra/iam-calls.py CALLS.jsonl [--template template.yaml] [--expect-all]

The template is expanded with the SAM translator and its intrinsics resolved as
infra/iam-lint.py does, with its sample deployment with the relay (stack `studios`,
account 123456789012, us-east-1; the tests run with the relay) and the tests' checkpoint
bucket as CheckpointBuckets. The tests' own names are renamed to the template's: each test's
table, bus, task queue, keys and default session role (declared by the test app) become
the template's resources; its job-definition prefix becomes JOB_DEFINITION_PREFIX's
value; any job queue becomes the first JobQueueArns (a compute environment's queue must
be one of them, so every queue a session runs on is).

A call is allowed when an Allow statement of the role (inline, or an AWS managed policy:
moto's copy of AWS's documents) matches its action and resource and no Deny does.
The stack's KMS keys must also let IAM decide (their key policy allows the account's
root, as AWS's default key policy does). Matching as IAM's reference says: actions case-insensitively with `*` and `?`; resources
case-sensitively, `*` and `?` within a colon-separated segment, a `*` that ends a segment
also beyond it; NotAction and NotResource. A statement with a Condition is not taken to
allow anything (the check does not evaluate conditions; none of the functions' statements
has one).

Exits 1 on a call the role does not allow (naming function, action and resource), on a
call the recorder could not derive a resource for, on an empty record (unless
--if-recorded and no test ran), and with
--expect-all on a function that was neither exercised nor listed in NOT_EXERCISED below
(or listed there but exercised).
"""

import argparse
import collections
import importlib.util
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

_spec = importlib.util.spec_from_file_location("iam_lint", os.path.join(HERE, "iam-lint.py"))
iam_lint = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(iam_lint)

# Functions the integration tests do not run through their entry points, and why
# (docs/iam.md keeps the same list).
NOT_EXERCISED = {
    "UnroutedFunction": "answers from the route table alone (http::unrouted); makes no AWS call",
}

REGION, ACCOUNT = iam_lint.REGION, iam_lint.ACCOUNT


def managed_policy(arn):
    """An AWS managed policy's document (moto ships AWS's), or None if unknown."""
    from moto.iam.aws_managed_policies import aws_managed_policies_data

    name = arn.rsplit("/", 1)[-1]
    policy = json.loads(aws_managed_policies_data).get(name)
    return policy and policy["Document"]


def as_list(value):
    return value if isinstance(value, list) else [value]


def action_matches(pattern, action):
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, action, re.IGNORECASE | re.DOTALL) is not None


def resource_matches(pattern, arn):
    if pattern == "*":
        return True
    regex = []
    for i, c in enumerate(pattern):
        if c == "*":
            ends_segment = i + 1 == len(pattern) or pattern[i + 1] == ":"
            regex.append(".*" if ends_segment else "[^:]*")
        elif c == "?":
            regex.append("[^:]")
        else:
            regex.append(re.escape(c))
    return re.fullmatch("".join(regex), arn, re.DOTALL) is not None


def statement_applies(statement, action, arn):
    if "Action" in statement:
        hit = any(action_matches(p, action) for p in as_list(statement["Action"]))
    else:
        hit = not any(action_matches(p, action) for p in as_list(statement.get("NotAction", [])))
    if not hit:
        return False
    if "Resource" in statement:
        return any(resource_matches(p, arn) for p in as_list(statement["Resource"]))
    return not any(resource_matches(p, arn) for p in as_list(statement.get("NotResource", [])))


def decide(documents, action, arn):
    """'allowed', 'denied' (an explicit Deny), 'conditional' (only a statement with a
    Condition would allow it) or 'missing'."""
    verdict = "missing"
    for document in documents:
        for statement in as_list(document.get("Statement", [])):
            if not statement_applies(statement, action, arn):
                continue
            if statement.get("Effect") == "Deny":
                return "denied"
            if statement.get("Condition"):
                verdict = "conditional" if verdict == "missing" else verdict
            else:
                verdict = "allowed"
    return verdict


def check_matching():
    """The matching rules on cases from IAM's documentation (a wrong rule fails here
    before it can pass or fail a call wrongly)."""
    assert action_matches("dynamodb:PutItem", "DynamoDB:putitem")
    assert action_matches("s3:*", "s3:GetObject") and not action_matches("s3:*", "sqs:SendMessage")
    assert action_matches("s3:Get?bject", "s3:GetObject")
    assert resource_matches("arn:aws:s3:::b/*", "arn:aws:s3:::b/a/b/c")
    assert resource_matches("arn:*:s3:::b/*.studios/*", "arn:aws:s3:::b/w/.studios/st-1/manifest.json")
    assert not resource_matches("arn:*:s3:::b/*.studios/*", "arn:aws:s3:::b/w/data/x")
    assert not resource_matches("arn:aws:dynamodb:r:1:table/T", "arn:aws:dynamodb:r:1:table/T/index/GSI1")
    assert resource_matches("arn:aws:dynamodb:r:1:table/T*", "arn:aws:dynamodb:r:1:table/T/index/GSI1")
    # `*` within a segment stops at a colon; at a segment's end it goes on.
    assert not resource_matches("arn:aws:logs:r:1:log-group:a*b", "arn:aws:logs:r:1:log-group:a:x:b")
    assert resource_matches("arn:aws:logs:r:1:log-group:a*", "arn:aws:logs:r:1:log-group:a:x:b")
    assert resource_matches("arn:aws:batch:r:1:job-queue/q?", "arn:aws:batch:r:1:job-queue/q1")
    assert not resource_matches("arn:aws:batch:r:1:job-queue/q?", "arn:aws:batch:r:1:job-queue/q12")
    assert not resource_matches("arn:aws:s3:::B/*", "arn:aws:s3:::b/x")
    allow = {"Statement": [{"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}]}
    assert decide([allow], "s3:GetObject", "arn:aws:s3:::b/x") == "allowed"
    assert decide([allow], "iam:PassRole", "arn:aws:iam::1:role/r") == "missing"
    deny = {"Statement": [{"Effect": "Deny", "Action": "s3:*", "NotResource": "arn:aws:s3:::b/*"}]}
    assert decide([allow, deny], "s3:GetObject", "arn:aws:s3:::c/x") == "denied"
    assert decide([allow, deny], "s3:GetObject", "arn:aws:s3:::b/x") == "allowed"
    conditional = {"Statement": [{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*",
                                  "Condition": {"StringLike": {"s3:prefix": ["a/*"]}}}]}
    assert decide([conditional], "s3:ListBucket", "arn:aws:s3:::b") == "conditional"


class Stack:
    def __init__(self, template_path, checkpoint_buckets):
        expanded = iam_lint.expand(template_path)
        # A deployment with the relay (the tests run with it: every start mints a relay
        # token), the tests' checkpoint bucket as CheckpointBuckets.
        self.parameters = {
            **iam_lint.STACK,
            **iam_lint.RELAY,
            "CheckpointBuckets": sorted(checkpoint_buckets) or iam_lint.STACK["CheckpointBuckets"],
        }
        self.resolver = iam_lint.Resolver(expanded, self.parameters)
        self.resources = expanded["Resources"]
        self.job_queue = self.parameters["JobQueueArns"][0]
        # handler → (logical id, policy documents, JOB_DEFINITION_PREFIX)
        self.functions = {}
        for name, resource in self.resources.items():
            if resource.get("Type") != "AWS::Lambda::Function":
                continue
            props = resource["Properties"]
            role = props["Role"]["Fn::GetAtt"][0]
            role_props = self.resources[role]["Properties"]
            if "PermissionsBoundary" in role_props:
                sys.exit(f"iam-calls: {role} has a permissions boundary, which this check does not model")
            documents = [self.resolver.resolve(p["PolicyDocument"]) for p in role_props.get("Policies", [])]
            for arn in self.resolver.resolve(role_props.get("ManagedPolicyArns", [])):
                document = managed_policy(arn)
                if document is None:
                    sys.exit(f"iam-calls: {role}: unknown managed policy {arn}")
                documents.append(document)
            env = self.resolver.resolve(props.get("Environment", {}).get("Variables", {}))
            self.functions[props["Handler"]] = (name, documents, env.get("JOB_DEFINITION_PREFIX"))

    def key_policy_delegates(self, action, arn):
        """A KMS key's own policy must allow the action too: the stack's keys let IAM
        policies decide by allowing the account (its root) `kms:*`, as AWS's default
        key policy does."""
        name = arn.rsplit("/", 1)[-1]
        key = self.resources.get(name, {})
        if not action.startswith("kms:") or key.get("Type") != "AWS::KMS::Key":
            return True
        root = f"arn:aws:iam::{ACCOUNT}:root"
        policy = self.resolver.resolve(key["Properties"].get("KeyPolicy", {}))
        for statement in as_list(policy.get("Statement", [])):
            principal = statement.get("Principal", {})
            principals = as_list(principal.get("AWS", [])) if isinstance(principal, dict) else [principal]
            if (statement.get("Effect") == "Allow" and not statement.get("Condition")
                    and any(p in (root, ACCOUNT, "*") for p in principals)
                    and statement_applies(statement, action, "*")):
                return True
        return False

    def arn_of(self, logical_id):
        if logical_id not in self.resources:
            return None
        return iam_lint.attribute(self.resources, logical_id, "Arn")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("calls")
    parser.add_argument("--template", default=os.path.join(HERE, "..", "template.yaml"))
    parser.add_argument("--expect-all", action="store_true",
                        help="every function is exercised or listed in NOT_EXERCISED")
    parser.add_argument("--if-recorded", action="store_true",
                        help="an empty record passes (a filtered run that ran no integration test)")
    args = parser.parse_args()
    os.environ.setdefault("AWS_DEFAULT_REGION", REGION)
    check_matching()

    renames, definition_prefixes, buckets = {}, set(), set()
    invoked, calls = set(), set()
    try:
        lines = open(args.calls).read().splitlines()
    except FileNotFoundError:
        lines = []
    for line in lines:
        entry = json.loads(line)
        if "invoked" in entry:
            invoked.add(entry["invoked"])
        elif "function" in entry:
            calls.add((entry["function"], entry["action"], entry["resource"], entry["operation"]))
        elif "resource" in entry:
            renames[entry["arn"]] = entry["resource"]
        elif "jobDefinitionPrefix" in entry:
            definition_prefixes.add(entry["jobDefinitionPrefix"])
        elif "checkpointBucket" in entry:
            buckets.add(entry["checkpointBucket"])
    if not calls:
        if args.if_recorded and not invoked:
            print("iam-calls: no integration test ran; nothing to check")
            return 0
        print(f"iam-calls: no calls recorded in {args.calls}: were the integration tests run with STUDIOS_IAM_CALLS set?")
        return 1

    stack = Stack(args.template, buckets)
    failures = collections.defaultdict(list)
    unknown_resources = set()

    def normalise(arn, handler_prefix):
        for test_arn, logical_id in renames.items():
            if arn == test_arn or arn.startswith(test_arn + "/"):
                template_arn = stack.arn_of(logical_id)
                if template_arn is None:
                    unknown_resources.add(logical_id)
                    return f"(the tests' {logical_id}, which the template does not have)"
                return template_arn + arn[len(test_arn):]
        for prefix in definition_prefixes:
            if arn.startswith(prefix) and handler_prefix:
                return prefix.rsplit("/", 1)[0] + "/" + handler_prefix + "-" + arn[len(prefix):]
        if re.match(r"arn:aws:batch:[^:]*:[0-9]*:job-queue/", arn):
            return stack.job_queue
        return arn

    checked = collections.Counter()
    for handler, action, resource, operation in sorted(calls, key=lambda c: (c[0], c[1], c[2] or "", c[3])):
        function = stack.functions.get(handler)
        if function is None:
            failures[(handler, "-", action)].append(f"no function with Handler '{handler}' in the template")
            continue
        name, documents, definition_prefix = function
        if resource is None:
            failures[(handler, name, action)].append(
                f"(the recorder cannot derive the resource of {operation}: extend tests/support/iam.rs)")
            continue
        arn = normalise(resource, definition_prefix)
        checked[handler] += 1
        verdict = decide(documents, action, arn)
        if verdict == "allowed" and not stack.key_policy_delegates(action, arn):
            verdict = "key policy"
        if verdict != "allowed":
            why = {"missing": "", "denied": " (explicitly denied)",
                   "key policy": " (the key's policy does not let IAM policies decide)",
                   "conditional": " (only under a Condition, which this check does not evaluate)"}[verdict]
            failures[(handler, name, action)].append(f"{arn}{why}")

    for logical_id in sorted(unknown_resources):
        print(f"FAIL the tests' {logical_id} is not a resource of the template")
    for (handler, name, action), resources in sorted(failures.items()):
        shown = sorted(set(resources))
        more = f" (and {len(shown) - 3} more)" if len(shown) > 3 else ""
        for r in shown[:3]:
            print(f"FAIL {name} ({handler}) may not {action} on {r}")
        if more:
            print(f"FAIL {name} ({handler}) may not {action} on{more}")

    template_handlers = {h: f[0] for h, f in stack.functions.items()}
    unexercised = sorted(name for h, name in template_handlers.items() if h not in invoked)
    print(f"iam-calls: {len(invoked)} functions exercised, {sum(checked.values())} distinct calls "
          f"checked, {sum(len(set(v)) for v in failures.values())} not allowed")
    for name in unexercised:
        reason = NOT_EXERCISED.get(name, "not exercised by this run")
        print(f"note {name}: {reason}")
    bad = bool(failures or unknown_resources)
    if args.expect_all:
        for name in unexercised:
            if name not in NOT_EXERCISED:
                print(f"FAIL {name} was not exercised by the tests (exercise it, or list it in NOT_EXERCISED with why)")
                bad = True
        for name in NOT_EXERCISED:
            if name not in unexercised:
                print(f"FAIL {name} is listed in NOT_EXERCISED but the tests exercise it")
                bad = True
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
