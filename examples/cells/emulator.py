#!/usr/bin/env python3
"""Sets up the ELBv2 emulator (moto_server) for the Cell examples, with boto3 from .tools.

  emulator.py setup           a VPC, a load balancer, an HTTP listener, and two target groups
                              of version 1.0.0; prints the listener's ARN
  emulator.py version 2.0.0   adds two target groups tagged with that version
  emulator.py weights         prints the forward weights of every rule of the listener

The endpoint, region and keys come from the usual AWS variables (AWS_ENDPOINT_URL, ...), as
for Baton itself.
"""
import os
import sys

import boto3

os.environ.setdefault("AWS_ENDPOINT_URL", "http://127.0.0.1:5000")
os.environ.setdefault("AWS_REGION", "us-east-1")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
region = os.environ["AWS_REGION"]
ec2 = boto3.client("ec2", region_name=region)
elb = boto3.client("elbv2", region_name=region)


def vpc_id():
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "cidr", "Values": ["10.20.0.0/16"]}])["Vpcs"]
    if vpcs:
        return vpcs[0]["VpcId"]
    return ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]


def target_groups(version):
    for i in (1, 2):
        name = "web-" + version.replace(".", "-") + "-" + str(i)
        arn = elb.create_target_group(
            Name=name, Protocol="HTTP", Port=8080, VpcId=vpc_id(), TargetType="ip"
        )["TargetGroups"][0]["TargetGroupArn"]
        elb.add_tags(
            ResourceArns=[arn],
            Tags=[
                {"Key": "role", "Value": "web"},
                {"Key": "okra.mumo.co/version", "Value": version},
                {"Key": "baton.dev/version", "Value": version},
            ],
        )


def listener_arn():
    for lb in elb.describe_load_balancers()["LoadBalancers"]:
        if lb["LoadBalancerName"] == "cells-example":
            return elb.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"][0]["ListenerArn"]
    return None


def setup():
    if listener_arn() is None:
        vpc = vpc_id()
        subnets = [
            ec2.create_subnet(VpcId=vpc, CidrBlock=cidr, AvailabilityZone=zone)["Subnet"]["SubnetId"]
            for cidr, zone in (("10.20.1.0/24", "us-east-1a"), ("10.20.2.0/24", "us-east-1b"))
        ]
        lb = elb.create_load_balancer(Name="cells-example", Subnets=subnets, Scheme="internal")
        elb.create_listener(
            LoadBalancerArn=lb["LoadBalancers"][0]["LoadBalancerArn"],
            Protocol="HTTP",
            Port=80,
            DefaultActions=[{"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "404"}}],
        )
        target_groups("1.0.0")
    print(listener_arn())


def weights():
    names = {tg["TargetGroupArn"]: tg["TargetGroupName"] for tg in elb.describe_target_groups()["TargetGroups"]}
    for rule in elb.describe_rules(ListenerArn=listener_arn())["Rules"]:
        if rule["IsDefault"]:
            continue
        forward = rule["Actions"][0].get("ForwardConfig", {}).get("TargetGroups", [])
        shares = ", ".join(f"{names.get(t['TargetGroupArn'], t['TargetGroupArn'])}={t.get('Weight')}" for t in forward)
        print(f"priority {rule['Priority']}: {shares}")


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "setup":
        setup()
    elif command == "version" and len(sys.argv) == 3:
        target_groups(sys.argv[2])
    elif command == "weights":
        weights()
    else:
        sys.exit(__doc__)
