"""③ The pattern language against AWS EventBridge's documentation, case by case.

Each case cites where it comes from:
  EB-CREATE    "Creating event patterns" (eb-create-pattern.html): matching values, considerations
  EB-FILTER    "Content filtering in Amazon EventBridge event patterns" (eb-event-patterns-content-based-filtering)
  EB-OPS       "Comparison operators for use in event patterns" (eb-create-pattern-operators.html), its table
  EB-ARRAYS    "Arrays in EventBridge event patterns" (eb-event-patterns-arrays.html)
  EB-NULL      "Matching null values and empty strings" (eb-event-patterns-null-values.html)
  RULER        the aws/event-ruler README, by section
  RULER-CODE   event-ruler's sources/tests, where the README is silent (JsonRuleCompiler, ByteMachineTest)
  AWS-SEEN     LocalStack's event-pattern templates, each checked against EventBridge itself (TestEventPattern);
               named by template file; used where the documentation is silent or wrong (300 vs 300.0)

Patterns are written exactly as in the documentation (JSON), which `match:` accepts as YAML.
"""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.rules.pattern import PatternError, compile_pattern

# The sample event of event-ruler's README ("Ruler by Example") and of EventBridge's filtering pages.
EC2 = {
    "version": "0", "id": "ddddd4-aaaa-7777-4444-345dd43cc333", "detail-type": "EC2 Instance State-change Notification",
    "source": "aws.ec2", "account": "012345679012", "time": "2017-10-02T16:24:49Z", "region": "us-east-1",
    "resources": ["arn:aws:ec2:us-east-1:123456789012:instance/i-000000aaaaaa00000"],
    "detail": {"c-count": 5, "d-count": 3, "x-limit": 301.8, "source-ip": "10.0.0.33",
               "instance-id": "i-000000aaaaaa00000", "state": "running"},
}
EMPLOYEES = {"employees": [{"firstName": "John", "lastName": "Doe"}, {"firstName": "Anna", "lastName": "Smith"},
                           {"firstName": "Peter", "lastName": "Jones"}]}
EMPLOYEES_NESTED = {"employees": [[{"firstName": "John", "lastName": "Doe"}, {"firstName": "Anna", "lastName": "Smith"}],
                                  [{"firstName": "Peter", "lastName": "Jones"}]]}
CLOUDWATCH_OR = {"source": ["aws.cloudwatch"], "$or": [{"metricName": ["CPUUtilization", "ReadLatency"]},
                                                      {"namespace": ["AWS/EC2", "AWS/ES"]}]}
COMPLEX = {"time": [{"prefix": "2017-10-02"}],
           "detail": {"state": [{"anything-but": "initializing"}], "c-count": [{"numeric": [">", 0, "<=", 5]}],
                      "d-count": [{"numeric": ["<", 10]}], "x-limit": [{"anything-but": [100, 200, 300]}],
                      "source-ip": [{"cidr": "10.0.0.0/8"}]}}


def detail(**fields: Any) -> dict[str, Any]:
    return {"detail": fields}


CASES: list[tuple[str, dict[str, Any], dict[str, Any], bool]] = [
    # -- exact values, and what the event must contain -------------------------------------------------------
    ("RULER Simple matching", {"detail-type": ["EC2 Instance State-change Notification"],
                               "resources": ["arn:aws:ec2:us-east-1:123456789012:instance/i-000000aaaaaa00000"],
                               "detail": {"state": ["initializing", "running"]}}, EC2, True),
    ("EB-CREATE Matching event values: a list is any of", {"source": ["aws.ec2", "aws.fargate"]}, EC2, True),
    ("EB-CREATE fields not in the pattern are ignored", {"source": ["aws.ec2"]}, {**EC2, "extra": {"a": 1}}, True),
    ("EB-CREATE the event must contain every field of the pattern", {"detail": {"status": ["running"]}}, EC2, False),
    ("EB-CREATE the nesting must be the same", {"state": ["running"]}, EC2, False),
    ("EB-CREATE strings match exactly, no case folding", {"source": ["AWS.EC2"]}, EC2, False),
    ("EB-CREATE values follow JSON: the number 5 is not the string '5'", {"n": [5]}, {"n": "5"}, False),
    ("EB-CREATE values follow JSON: the string '5' is not the number 5", {"n": ["5"]}, {"n": 5}, False),
    ("AWS-SEEN number_comparison_float: 300 matches 300.0 (the doc's 'not equal' is not what AWS does; "
     "RULER-CODE JsonRuleCompiler adds numericEquals for a number)", {"number": [300]}, {"number": 300.0}, True),
    ("EB-CREATE values follow JSON: true is not the number 1", {"flag": [True]}, {"flag": 1}, False),
    ("EB-CREATE values follow JSON: the number 1 is not true", {"count": [1]}, {"count": True}, False),
    ("EB-OPS Equals", {"Name": ["Alice"]}, {"Name": "Alice"}, True),
    ("EB-OPS Empty", {"LastName": [""]}, {"LastName": ""}, True),
    ("EB-NULL an empty string is not null", {"LastName": [""]}, {"LastName": None}, False),
    ("EB-OPS Null / EB-NULL null matches JSON null", {"detail": {"responseElements": [None]}},
     detail(eventVersion="", responseElements=None), True),
    ("EB-NULL null is not the string 'null' (AWS-SEEN null_value_NEG)", {"detail": {"responseElements": [None]}},
     detail(responseElements="null"), False),
    ("EB-NULL null is not a missing field", {"detail": {"responseElements": [None]}}, detail(), False),
    ("EB-OPS And", {"Location": ["New York"], "Day": ["Monday"]}, {"Location": "New York", "Day": "Monday"}, True),
    ("EB-OPS And: both must hold", {"Location": ["New York"], "Day": ["Monday"]},
     {"Location": "New York", "Day": "Friday"}, False),
    ("EB-OPS Or", {"PaymentType": ["Credit", "Debit"]}, {"PaymentType": "Debit"}, True),
    ("RULER Caveat: dotted keys are nested objects", {"detail": {"state.status": ["running"]}},
     {"detail": {"state": {"status": "running"}}}, True),
    # -- prefix, suffix, equals-ignore-case, wildcard --------------------------------------------------------
    ("EB-FILTER Prefix matching", {"time": [{"prefix": "2017-10-02"}]}, EC2, True),
    ("EB-FILTER Prefix matching: another day", {"time": [{"prefix": "2017-10-03"}]}, EC2, False),
    ("RULER Prefix matching works only on strings", {"detail": {"c-count": [{"prefix": "5"}]}}, EC2, False),
    ("EB-OPS Begins with: case-sensitive", {"Region": [{"prefix": "us-"}]}, {"Region": "US-east-1"}, False),
    ("EB-FILTER Prefix matching while ignoring case", {"detail": {"service": [{"prefix": {"equals-ignore-case":
                                                                                          "EventB"}}]}},
     detail(service="EVENTBRIDGE"), True),
    ("EB-FILTER Prefix matching while ignoring case: still a prefix", {"detail": {"service": [
        {"prefix": {"equals-ignore-case": "EventB"}}]}}, detail(service="my-eventbridge"), False),
    ("EB-FILTER Suffix matching", {"FileName": [{"suffix": ".png"}]}, {"FileName": "image.png"}, True),
    ("EB-FILTER Suffix matching: case-sensitive", {"FileName": [{"suffix": ".png"}]}, {"FileName": "IMAGE.PNG"}, False),
    ("EB-FILTER Suffix matching while ignoring case", {"detail": {"FileName": [{"suffix": {"equals-ignore-case":
                                                                                           ".png"}}]}},
     detail(FileName="IMAGE.PNG"), True),
    ("RULER Suffix matching", {"source": [{"suffix": "ec2"}]}, EC2, True),
    ("EB-OPS Equals (ignore case)", {"Name": [{"equals-ignore-case": "alice"}]}, {"Name": "ALICE"}, True),
    ("EB-OPS Equals (ignore case): the whole value", {"Name": [{"equals-ignore-case": "alice"}]}, {"Name": "Alicia"},
     False),
    ("RULER Equals-ignore-case works only on strings", {"n": [{"equals-ignore-case": "5"}]}, {"n": 5}, False),
    ("EB-FILTER Wildcard matching", {"EventBusArn": [{"wildcard": "arn:aws:events:us-east-1:*:event-bus/*"}]},
     {"EventBusArn": "arn:aws:events:us-east-1:123456789012:event-bus/myEventBus"}, True),
    ("EB-FILTER Wildcard matching: another region", {"EventBusArn": [{"wildcard":
                                                                      "arn:aws:events:us-east-1:*:event-bus/*"}]},
     {"EventBusArn": "arn:aws:events:eu-west-1:123456789012:event-bus/myEventBus"}, False),
    ("RULER Wildcard matching", {"source": [{"wildcard": "Simple*Service"}]}, {"source": "SimpleQueueService"}, True),
    ("RULER-CODE ByteMachineTest: a star may match nothing ('h*o' matches 'ho')",
     {"source": [{"wildcard": "Simple*Service"}]}, {"source": "SimpleService"}, True),
    ("RULER Wildcard matching is case-sensitive", {"source": [{"wildcard": "Simple*Service"}]},
     {"source": "simpleQueueService"}, False),
    ("RULER Wildcard: an escaped star is a star", {"s": [{"wildcard": "a\\*b"}]}, {"s": "a*b"}, True),
    ("RULER Wildcard: an escaped star is not a wildcard", {"s": [{"wildcard": "a\\*b"}]}, {"s": "axxb"}, False),
    ("RULER Wildcard: two backslashes are one", {"s": [{"wildcard": "a\\\\*"}]}, {"s": "a\\bc"}, True),
    ("RULER Wildcard matches only work on strings", {"n": [{"wildcard": "1*"}]}, {"n": 12}, False),
    # -- anything-but ----------------------------------------------------------------------------------------
    ("EB-FILTER Anything-but matching (string)", {"detail": {"state": [{"anything-but": "initializing"}]}}, EC2, True),
    ("EB-FILTER Anything-but matching (string): the excluded value", {"detail": {"state": [
        {"anything-but": "initializing"}]}}, detail(state="initializing"), False),
    ("EB-FILTER Anything-but matching (number)", {"detail": {"x-limit": [{"anything-but": 123}]}}, EC2, True),
    ("EB-FILTER Anything-but matching (number): the excluded value", {"detail": {"x-limit": [{"anything-but": 123}]}},
     detail(**{"x-limit": 123}), False),
    ("EB-FILTER Anything-but list of strings", {"detail": {"state": [{"anything-but": ["stopped", "overloaded"]}]}},
     EC2, True),
    ("EB-FILTER Anything-but list of strings: excluded", {"detail": {"state": [
        {"anything-but": ["stopped", "overloaded"]}]}}, detail(state="overloaded"), False),
    ("EB-FILTER Anything-but list of numbers", {"detail": {"x-limit": [{"anything-but": [100, 200, 300]}]}}, EC2, True),
    ("EB-FILTER Anything-but list of numbers: excluded by value", {"detail": {"x-limit": [
        {"anything-but": [100, 200, 300]}]}}, detail(**{"x-limit": 200.0}), False),
    ("EB-FILTER Anything-but prefix", {"detail": {"state": [{"anything-but": {"prefix": "init"}}]}}, EC2, True),
    ("EB-FILTER Anything-but prefix: excluded", {"detail": {"state": [{"anything-but": {"prefix": "init"}}]}},
     detail(state="initializing"), False),
    ("EB-OPS Anything-but (ends with)", {"FileName": [{"anything-but": {"suffix": ".png"}}]}, {"FileName": "a.jpg"},
     True),
    ("EB-OPS Anything-but (ends with): excluded", {"FileName": [{"anything-but": {"suffix": ".png"}}]},
     {"FileName": "a.png"}, False),
    ("EB-OPS Anything-but (ignore case)", {"state": [{"anything-but": {"equals-ignore-case": "initializing"}}]},
     {"state": "INITIALIZING"}, False),
    ("EB-OPS Anything-but (ignore case): another value", {"state": [{"anything-but": {"equals-ignore-case":
                                                                                      "initializing"}}]},
     {"state": "running"}, True),
    ("EB-OPS Anything-but using a wildcard", {"FilePath": [{"anything-but": {"wildcard": "*/lib/*"}}]},
     {"FilePath": "/usr/lib/x.so"}, False),
    ("EB-OPS Anything-but using a wildcard: another path", {"FilePath": [{"anything-but": {"wildcard": "*/lib/*"}}]},
     {"FilePath": "/usr/bin/x"}, True),
    ("EB-OPS Not", {"Weather": [{"anything-but": ["Raining"]}]}, {"Weather": "Sunny"}, True),
    ("AWS-SEEN content_anything_but_string_missing_NEG: anything-but needs the field",
     {"detail": {"state": [{"anything-but": "initializing"}]}}, detail(), False),
    ("AWS-SEEN content_anything_prefix_missing_NEG: anything-but prefix needs the field",
     {"detail": {"state": [{"anything-but": {"prefix": "init"}}]}}, detail(), False),
    ("AWS-SEEN content_anything_but_string_null: anything-but matches null",
     {"detail": {"state": [{"anything-but": "initializing"}]}}, detail(state=None), True),
    ("AWS-SEEN content_anything_prefix_int_value: anything-but prefix matches a number",
     {"detail": {"state": [{"anything-but": {"prefix": "init"}}]}}, detail(state=12), True),
    ("AWS-SEEN content_anything_wildcard_int: anything-but wildcard matches a number",
     {"detail": {"FilePath": [{"anything-but": {"wildcard": "*/dir/*"}}]}}, detail(FilePath=123), True),
    ("RULER Anything-but: a number is not excluded by a string", {"n": [{"anything-but": "5"}]}, {"n": 5}, True),
    # -- numeric ---------------------------------------------------------------------------------------------
    ("RULER Numeric matching / EB-FILTER Numeric matching", {"detail": {
        "c-count": [{"numeric": [">", 0, "<=", 5]}], "d-count": [{"numeric": ["<", 10]}],
        "x-limit": [{"numeric": ["=", 3.018e2]}]}}, EC2, True),
    ("EB-FILTER Numeric matching: an open bound", {"detail": {"c-count": [{"numeric": [">", 5]}]}}, EC2, False),
    ("EB-FILTER Numeric matching: a closed bound", {"detail": {"c-count": [{"numeric": [">=", 5]}]}}, EC2, True),
    ("RULER Numeric matching only works with JSON numbers", {"detail": {"c-count": [{"numeric": [">", 0]}]}},
     detail(**{"c-count": "5"}), False),
    ("RULER Numeric matching: not a boolean", {"n": [{"numeric": [">", 0]}]}, {"n": True}, False),
    ("EB-OPS Numeric (equals)", {"Price": [{"numeric": ["=", 100]}]}, {"Price": 100.0}, True),
    ("EB-OPS Numeric (range)", {"Price": [{"numeric": [">", 10, "<=", 20]}]}, {"Price": 20}, True),
    ("EB-OPS Numeric (range): above", {"Price": [{"numeric": [">", 10, "<=", 20]}]}, {"Price": 20.5}, False),
    ("RULER Numeric matching is limited to -5.0e9..5.0e9", {"n": [{"numeric": [">", 0]}]}, {"n": 6e9}, False),
    # -- cidr ------------------------------------------------------------------------------------------------
    ("RULER IP Address Matching / EB-FILTER IP address matching", {"detail": {"source-ip": [{"cidr": "10.0.0.0/24"}]}},
     EC2, True),
    ("EB-FILTER IP address matching: outside the network", {"detail": {"source-ip": [{"cidr": "10.0.0.0/24"}]}},
     detail(**{"source-ip": "10.0.1.1"}), False),
    ("RULER IP Address Matching also works with IPv6", {"ip": [{"cidr": "2001:db8::/32"}]}, {"ip": "2001:db8::1"},
     True),
    ("RULER IP Address Matching, IPv6 outside", {"ip": [{"cidr": "2001:db8::/32"}]}, {"ip": "2001:db9::1"}, False),
    ("AWS-SEEN content_ip_address_bad_type_NEG: not a string", {"detail": {"sourceIPAddress": [{"cidr": "10.0.0.0/24"}]}},
     detail(sourceIPAddress=123), False),
    # CIDR.java: the range starts at the address as written, only addresses its regexes accept are addresses,
    # and an IPv4-mapped IPv6 address is read (by Java's InetAddress) as its IPv4 address
    ("RULER-CODE cidr: the range starts at the address written (below it)", {"ip": [{"cidr": "10.0.0.5/8"}]},
     {"ip": "10.0.0.1"}, False),
    ("RULER-CODE cidr: the range starts at the address written (from it)", {"ip": [{"cidr": "10.0.0.5/8"}]},
     {"ip": "10.0.0.5"}, True),
    ("RULER-CODE cidr: the range ends with the mask's host bits set", {"ip": [{"cidr": "10.0.0.5/8"}]},
     {"ip": "10.255.255.255"}, True),
    ("RULER-CODE cidr: an IPv4-mapped IPv6 address is its IPv4 address", {"ip": [{"cidr": "10.0.0.0/8"}]},
     {"ip": "::ffff:a00:1"}, True),
    ("RULER-CODE cidr: dotted IPv4 inside IPv6 is not an address", {"ip": [{"cidr": "10.0.0.0/8"}]},
     {"ip": "::ffff:10.0.0.1"}, False),
    ("RULER-CODE cidr: an address with a zone is not an address", {"ip": [{"cidr": "fe80::/10"}]},
     {"ip": "fe80::1%eth0"}, False),
    ("RULER-CODE cidr: IPv6 hex digits in any case", {"ip": [{"cidr": "fe80::/10"}]}, {"ip": "FE80::1"}, True),
    # ComparableNumber.java: numbers within -5e9 .. 5e9 compare to 6 decimal places, in numeric and (JsonRuleCompiler
    # adds numericEquals to a number's exact match) exact values
    ("RULER-CODE numeric = at 6 decimal places: 0.1 + 0.2 is 0.3", {"n": [{"numeric": ["=", 0.3]}]},
     {"n": 0.1 + 0.2}, True),
    ("RULER-CODE numeric > 0: 1e-7 is 0 at 6 decimal places", {"n": [{"numeric": [">", 0]}]}, {"n": 1e-7}, False),
    ("RULER-CODE numeric > 0: 1e-6 is above", {"n": [{"numeric": [">", 0]}]}, {"n": 1e-6}, True),
    ("RULER-CODE an exact number at 6 decimal places", {"n": [300]}, {"n": 300.0000001}, True),
    ("RULER-CODE an exact number at 6 decimal places: 300.00001 differs", {"n": [300]}, {"n": 300.00001}, False),
    ("RULER-CODE an exact number beyond 5e9 compares by value", {"n": [12345678901]}, {"n": 12345678901.0}, True),
    # -- exists ----------------------------------------------------------------------------------------------
    ("RULER Exists matching (true)", {"detail": {"c-count": [{"exists": True}]}}, EC2, True),
    ("RULER Exists matching (false): the field is there", {"detail": {"c-count": [{"exists": False}]}}, EC2, False),
    ("RULER Exists matching (false): no such field", {"detail": {"c-count": [{"exists": False}]}},
     detail(state="running"), True),
    ("RULER Exists works on leaf nodes only: an object is not there", {"detail": {"c-count": [{"exists": False}]}},
     detail(**{"c-count": {"c1": 100}}), True),
    ("EB-FILTER Exists matching: an intermediate node does not exist", {"person": {"address": [{"exists": True}]}},
     {"person": {"name": "John Doe", "address": {"street": "123 Main St"}}}, False),
    ("AWS-SEEN content_exists_NEG: exists true needs the field", {"detail": {"state": [{"exists": True}]}},
     detail(**{"c-count": {"c1": 100}}), False),
    ("AWS-SEEN content_exists_false: a missing parent", {"detail": {"level1": {"level2:": {"level3": {
        "level4": [{"exists": False}]}}}}}, detail(level1={"level2": "l2 value"}), True),
    ("AWS-SEEN content_exists_false_NEG", {"detail": {"level1": {"level2": {"level3": {"level4": [{"exists": False}]}}}}},
     detail(level1={"level2": {"level3": {"level4": "l4 value"}}}), False),
    ("EB-OPS Exists: null is a value", {"ProductName": [{"exists": True}]}, {"ProductName": None}, True),
    # exists: false in arrays (RULER-CODE: ACFinder.tryMustNotExistMatch and NameState.getNameTransitions: a field
    # is absent when no field of that name is consistent with the array elements chosen so far; when no value has
    # chosen an element, that is every element)
    ("RULER-CODE exists false in an array: one element has the field", {"items": {"discount": [{"exists": False}]}},
     {"items": [{"sku": 1, "discount": 5}, {"sku": 2}]}, False),
    ("RULER-CODE exists false in an array: no element has it", {"items": {"discount": [{"exists": False}]}},
     {"items": [{"sku": 1}, {"sku": 2}]}, True),
    ("RULER-CODE exists false in an array: a scalar element has no fields, the object has it",
     {"data": {"b": [{"exists": False}]}}, {"data": [1, {"b": "us"}]}, False),
    ("RULER-CODE exists false in an array: a null element does not hide the object's field",
     {"tags": {"x": [{"exists": False}]}}, {"tags": [{"x": 1}, None]}, False),
    ("RULER-CODE exists false in an array: only scalars", {"tags": {"x": [{"exists": False}]}}, {"tags": [1, None]},
     True),
    ("RULER-CODE exists false after a value that chose the element (category < discount)",
     {"items": {"category": ["book"], "discount": [{"exists": False}]}},
     {"items": [{"category": "book", "discount": 5}, {"category": "book"}]}, True),
    ("RULER-CODE exists false after a value that chose the element: the chosen one has it",
     {"items": {"category": ["book"], "discount": [{"exists": False}]}},
     {"items": [{"category": "book", "discount": 5}, {"category": "toy"}]}, False),
    ("RULER-CODE exists false in a nested array no value chose: every nested element",
     {"orders": {"id": [1], "lines": {"gift": [{"exists": False}]}}},
     {"orders": [{"id": 1, "lines": [{"sku": "a"}, {"sku": "b", "gift": True}]}, {"id": 2, "lines": [{"sku": "c"}]}]},
     False),
    ("RULER-CODE exists false in a nested array no value chose: absent from the chosen order's lines",
     {"orders": {"id": [2], "lines": {"gift": [{"exists": False}]}}},
     {"orders": [{"id": 1, "lines": [{"sku": "a"}, {"sku": "b", "gift": True}]}, {"id": 2, "lines": [{"sku": "c"}]}]},
     True),
    ("RULER-CODE a value or absence: the value chose no element, absence needs every element",
     {"users": {"email": [{"suffix": "@corp.test"}, {"exists": False}]}},
     {"users": [{"email": "a@other.test"}, {"name": "b"}]}, False),
    ("RULER-CODE a value or absence: a value in one element", {"users": {"email": [{"suffix": "@corp.test"},
                                                                                   {"exists": False}]}},
     {"users": [{"email": "a@corp.test"}, {"name": "b"}]}, True),
    # -- arrays ----------------------------------------------------------------------------------------------
    ("EB-ARRAYS the pattern matches if the event array and the pattern's values intersect",
     {"resources": ["arn:aws:ec2:us-east-1:123456789012:instance/i-b188560f",
                    "arn:aws:ec2:us-east-1:111122223333:instance/i-b188560f"]},
     {"resources": ["arn:aws:ec2:us-east-1:444455556666:instance/i-b188560f",
                    "arn:aws:ec2:us-east-1:111122223333:instance/i-b188560f"]}, True),
    ("AWS-SEEN arrays_NEG: no value in common", {"resources": ["arn:aws:ec2:us-east-1:123456789012:instance/i-b188560f"]},
     {"resources": ["arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:eb56d16b"]}, False),
    ("AWS-SEEN arrays_empty_null_NEG: an empty array is not null", {"resources": [None]}, {"resources": []}, False),
    ("RULER JSON Array Matching: objects in an array", {"employees": {"firstName": ["Anna"]}}, EMPLOYEES, True),
    ("RULER JSON Array Matching: multi-level arrays", {"employees": {"firstName": ["Anna"]}}, EMPLOYEES_NESTED, True),
    ("RULER JSON Array Matching: fields of one element (Anna Jones is nobody)",
     {"employees": {"firstName": ["Anna"], "lastName": ["Jones"]}}, EMPLOYEES, False),
    ("RULER JSON Array Matching: fields of one element (Anna Smith)",
     {"employees": {"firstName": ["Anna"], "lastName": ["Smith"]}}, EMPLOYEES, True),
    ("RULER JSON Array Matching: consistency holds through $or too",
     {"employees": {"firstName": ["Anna"]}, "$or": [{"employees": {"lastName": ["Jones"]}},
                                                    {"employees": {"lastName": ["Doe"]}}]}, EMPLOYEES, False),
    ("EB-ARRAYS anything-but holds if an element is not excluded", {"tags": [{"anything-but": "a"}]},
     {"tags": ["a", "b"]}, True),
    ("EB-ARRAYS numeric holds if an element is in range", {"sizes": [{"numeric": [">", 10]}]}, {"sizes": [1, 20]}, True),
    # -- $or and the complex example -------------------------------------------------------------------------
    ("RULER $or: Normal Or (namespace)", CLOUDWATCH_OR, {"source": "aws.cloudwatch", "namespace": "AWS/EC2"}, True),
    ("RULER $or: Normal Or (metricName)", CLOUDWATCH_OR, {"source": "aws.cloudwatch", "metricName": "ReadLatency"}, True),
    ("RULER $or: Normal Or, neither", CLOUDWATCH_OR, {"source": "aws.cloudwatch", "metricName": "Other"}, False),
    ("RULER $or: Normal Or, the and part", CLOUDWATCH_OR, {"source": "aws.ec2", "namespace": "AWS/EC2"}, False),
    ("RULER $or: Parallel Or", {"$or": [{"metricName": ["CPUUtilization"]}, {"namespace": ["AWS/EC2"]}],
                                "detail": {"$or": [{"source": ["aws.cloudwatch"]},
                                                   {"detail-type": ["CloudWatch Alarm State Change"]}]}},
     {"namespace": "AWS/EC2", "detail": {"detail-type": "CloudWatch Alarm State Change"}}, True),
    ("RULER $or: Or has an And inside", {"source": ["aws.cloudwatch"], "$or": [
        {"metricName": ["CPUUtilization"]}, {"metricType": ["MetricType"], "namespace": ["AWS/EC2"]},
        {"scope": ["Service"]}]}, {"source": "aws.cloudwatch", "metricType": "MetricType"}, False),
    ("RULER $or: Nested Or and And", {"source": ["aws.cloudwatch"], "$or": [
        {"metricName": ["CPUUtilization"]},
        {"metricType": ["MetricType"], "namespace": ["AWS/EC2"], "$or": [{"metricId": [1234]}, {"spaceId": [1000]}]},
        {"scope": ["Service"]}]},
     {"source": "aws.cloudwatch", "metricType": "MetricType", "namespace": "AWS/EC2", "spaceId": 1000}, True),
    ("EB-OPS Or (multiple fields)", {"$or": [{"Location": ["New York"]}, {"Day": ["Monday"]}]}, {"Day": "Monday"}, True),
    ("RULER Complex example", COMPLEX, EC2, True),
    ("RULER Complex example: an excluded x-limit", COMPLEX, {**EC2, "detail": {**EC2["detail"], "x-limit": 300}}, False),
]


@pytest.mark.parametrize(("source", "pattern", "event", "holds"), CASES, ids=[c[0] for c in CASES])
def test_a_documented_case(source: str, pattern: dict[str, Any], event: dict[str, Any], holds: bool) -> None:
    failure = compile_pattern(pattern).evaluate(event)

    assert (failure is None) is holds, failure


REFUSED: list[tuple[str, dict[str, Any], str]] = [
    ("RULER Wildcard: consecutive wildcard characters are not allowed", {"s": [{"wildcard": "abc**def"}]},
     "consecutive wildcard characters at position 3"),
    ("RULER Wildcard: a backslash escapes only * or a backslash", {"s": [{"wildcard": "a*c\\def"}]}, "invalid escape"),
    ("RULER Anything-but lists contain entirely strings or entirely numerics", {"s": [{"anything-but": ["a", 1]}]},
     "only strings or only numbers"),
    ("RULER-CODE anything-but: null is not supported", {"s": [{"anything-but": None}]}, "not null"),
    ("RULER-CODE anything-but: booleans are not supported", {"s": [{"anything-but": [True]}]}, "not a boolean"),
    ("RULER-CODE anything-but: null prefix/suffix not allowed", {"s": [{"anything-but": {"prefix": ""}}]},
     "must not be empty"),
    ("AWS-SEEN content_anything_prefix_ignorecase_EXC", {"s": [{"anything-but": {"prefix": {"equals-ignore-case": "a"}}}]},
     "prefix takes a string"),
    ("RULER-CODE numeric: a range is a lower bound then an upper one", {"n": [{"numeric": ["<", 10, ">", 0]}]},
     "a lower bound then an upper one"),
    ("RULER-CODE numeric: bottom must be less than top", {"n": [{"numeric": [">", 5, "<", 1]}]},
     "must be below its upper bound"),
    ("RULER-CODE numeric: the value of = must be numeric", {"n": [{"numeric": ["=", "3"]}]}, "must be a number"),
    ("RULER-CODE numeric: unrecognized operator", {"n": [{"numeric": ["!=", 3]}]}, "unknown numeric operator"),
    ("RULER Numeric matching is limited to -5.0e9..5.0e9", {"n": [{"numeric": ["<", 6e9]}]}, "limited to"),
    ("RULER-CODE exists takes true or false", {"n": [{"exists": "yes"}]}, "exists takes true or false"),
    ("AWS-SEEN content_ip_address_EXC family: a network needs its mask", {"ip": [{"cidr": "10.0.0.0"}]},
     "is not a network"),
    ("AWS-SEEN content_ip_address_bad_ip_EXC", {"ip": [{"cidr": "10.0.0.300/24"}]}, "is not a valid network"),
    ("RULER-CODE CIDR.java: IPv4 mask bits must be < 32", {"ip": [{"cidr": "10.0.0.1/32"}]}, "below 32 bits"),
    ("RULER-CODE CIDR.java: IPv6 mask bits must be < 128", {"ip": [{"cidr": "2001:db8::1/128"}]}, "below 128 bits"),
    ("RULER-CODE CIDR.java: a mapped address is IPv4", {"ip": [{"cidr": "::ffff:0:0/96"}]}, "IPv4-mapped"),
    ("RULER-CODE CIDR.java: a zone is not an address", {"ip": [{"cidr": "fe80::1%eth0/64"}]}, "no zone"),
    ("ORCH a mask is ASCII digits (str.isdigit takes superscripts)", {"ip": [{"cidr": "10.0.0.0/\u00b2"}]},
     "is not a valid network"),
    ("ORCH a mask is ASCII digits (and Arabic-Indic ones)", {"ip": [{"cidr": "1.2.3.4/\u0663"}]},
     "is not a valid network"),
    ("AWS-SEEN arrays_empty_EXC: empty arrays are not allowed", {"resources": []}, "an empty list matches nothing"),
    ("RULER $or needs at least two objects", {"$or": [{"a": [1]}]}, "at least two"),
    ("RULER-CODE only one key allowed in a match expression", {"s": [{"prefix": "a", "suffix": "b"}]},
     "exactly one key"),
    ("RULER-CODE unrecognized match type", {"s": [{"contains": "a"}]}, "unknown operator 'contains'"),
    ("RULER-CODE prefix match pattern must be a string", {"s": [{"prefix": 5}]}, "prefix takes a string"),
    ("RULER $or: operator names are reserved inside $or", {"$or": [{"numeric": [1]}, {"prefix": ["abc"]}]},
     "is an operator, not a field"),
]


@pytest.mark.parametrize(("source", "pattern", "message"), REFUSED, ids=[c[0] for c in REFUSED])
def test_a_pattern_eventbridge_refuses_is_refused(source: str, pattern: dict[str, Any], message: str) -> None:
    with pytest.raises(PatternError) as caught:
        compile_pattern(pattern)

    assert message in str(caught.value)


def test_exists_false_is_tested_in_the_element_the_values_chose_whatever_the_key_order() -> None:
    """A documented deviation (README, "Arrays in the event"): event-ruler walks a rule's fields in name order and
    tests an absence against the elements chosen by the fields before it, so it refuses this pattern ("discount"
    sorts before "sku": no element has been chosen yet, and one has a discount); orch tests every absence in the
    element the values chose, whatever the names: an item with sku 2 and no discount."""
    pattern = compile_pattern({"items": {"sku": [2], "discount": [{"exists": False}]}})

    assert pattern.evaluate({"items": [{"sku": 1, "discount": 5}, {"sku": 2}]}) is None
    assert pattern.evaluate({"items": [{"sku": 1}, {"sku": 2, "discount": 5}]}) is not None


@pytest.mark.parametrize(("event", "holds"), [({}, True), ({"state": "running"}, True), ({"state": "init"}, False)])
def test_anything_but_or_missing_is_written_as_both(event: dict[str, Any], holds: bool) -> None:
    pattern = compile_pattern({"state": [{"anything-but": "init"}, {"exists": False}]})

    assert (pattern.evaluate(event) is None) is holds
