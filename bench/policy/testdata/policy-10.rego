package pomerium.policy

import rego.v1

default allow := [false, set()]

default deny := [false, set()]

groups_0 := [true, {"groups-ok"}] if {
	record_type := "pomerium.io/DirectoryUser"
	session := get_session(input.session.id)
	directory_user := get_databroker_record(record_type, session.user_id)
	group_ids := object.get(directory_user, "group_ids", [])
	count([true | some v; v = group_ids[_]; v == "dev"]) > 0
} else := [false, {"groups-unauthorized"}] if {
	session := get_session(input.session.id)
	session.id != ""
} else := [false, {"user-unauthenticated"}]

or_0 := v if {
	results := [groups_0]
	normalized := [normalize_criterion_result(x) | x := results[i]]
	v := merge_with_or(normalized)
}

groups_1 := [true, {"groups-ok"}] if {
	record_type := "pomerium.io/DirectoryUser"
	session := get_session(input.session.id)
	directory_user := get_databroker_record(record_type, session.user_id)
	group_ids := object.get(directory_user, "group_ids", [])
	count([true | some v; v = group_ids[_]; v == "sre"]) > 0
} else := [false, {"groups-unauthorized"}] if {
	session := get_session(input.session.id)
	session.id != ""
} else := [false, {"user-unauthenticated"}]

or_1 := v if {
	results := [groups_1]
	normalized := [normalize_criterion_result(x) | x := results[i]]
	v := merge_with_or(normalized)
}

domain_0 := [true, {"domain-ok"}] if {
	session := get_session(input.session.id)
	user := get_user(session)
	domain := split(get_user_email(session, user), "@")[1]
	domain == "corp0.example.com"
} else := [false, {"domain-unauthorized"}] if {
	session := get_session(input.session.id)
	session.id != ""
} else := [false, {"user-unauthenticated"}]

kubernetes_verb_0 := [true, {"kubernetes-verb-ok"}] if {
	count([true | some v; v = ["get", "list", "watch"][_]; v == input.kubernetes.verb]) > 0
} else := [false, {"kubernetes-verb-unauthorized"}]

and_0 := v if {
	results := [domain_0, kubernetes_verb_0]
	normalized := [normalize_criterion_result(x) | x := results[i]]
	v := merge_with_and(normalized)
}

claim_0 := [true, {"claim-ok"}] if {
	rule_path := "department"
	session := get_session(input.session.id)
	session_claims := object.get(session, "claims", {})
	user := get_user(session)
	user_claims := object.get(user, "claims", {})
	all_claims := object.union(session_claims, user_claims)
	values := object_get(all_claims, rule_path, [])
	count([true | some v; v = values[_]; v == "platform0"]) > 0
} else := [false, {"claim-unauthorized"}] if {
	session := get_session(input.session.id)
	session.id != ""
} else := [false, {"user-unauthenticated"}]

kubernetes_namespace_0 := [true, {"kubernetes-namespace-ok"}] if {
	startswith(input.kubernetes.namespace, "platform0-")
} else := [false, {"kubernetes-namespace-unauthorized"}]

and_1 := v if {
	results := [claim_0, kubernetes_namespace_0]
	normalized := [normalize_criterion_result(x) | x := results[i]]
	v := merge_with_and(normalized)
}

email_0 := [true, {"email-ok"}] if {
	session := get_session(input.session.id)
	user := get_user(session)
	email := get_user_email(session, user)
	count([true | some v; v = ["a0@example.com", "b0@example.com", "c0@example.com"][_]; v == email]) > 0
} else := [false, {"email-unauthorized"}] if {
	session := get_session(input.session.id)
	session.id != ""
} else := [false, {"user-unauthenticated"}]

or_2 := v if {
	results := [email_0]
	normalized := [normalize_criterion_result(x) | x := results[i]]
	v := merge_with_or(normalized)
}

source_ip_0 := [true, {"source-ip-ok"}] if {
	count(net.cidr_contains_matches(["10.0.0.0/16", "192.168.0.0/16"], input.http.ip)) > 0
} else := [false, {"source-ip-unauthorized"}]

authenticated_user_0 := [true, {"user-ok"}] if {
	session := get_session(input.session.id)
	session.user_id != null
	session.user_id != ""
} else := [false, {"user-unauthorized"}] if {
	session := get_session(input.session.id)
	session.id != ""
} else := [false, {"user-unauthenticated"}]

kubernetes_api_group_0 := [true, {"kubernetes-api-group-ok"}] if {
	input.kubernetes.api_group == "batch0"
} else := [false, {"kubernetes-api-group-unauthorized"}]

and_2 := v if {
	results := [source_ip_0, authenticated_user_0, kubernetes_api_group_0]
	normalized := [normalize_criterion_result(x) | x := results[i]]
	v := merge_with_and(normalized)
}

groups_2 := [true, {"groups-ok"}] if {
	record_type := "pomerium.io/DirectoryUser"
	session := get_session(input.session.id)
	directory_user := get_databroker_record(record_type, session.user_id)
	group_ids := object.get(directory_user, "group_ids", [])
	count([true | some v; v = group_ids[_]; v == "oncall0"]) > 0
} else := [false, {"groups-unauthorized"}] if {
	session := get_session(input.session.id)
	session.id != ""
} else := [false, {"user-unauthenticated"}]

time_of_day_0 := [true, {"time-of-day-ok"}] if {
	clock := time.clock([time.now_ns(), "Europe/Berlin"])
	seconds := (((clock[0] * 60) + clock[1]) * 60) + clock[2]
	seconds >= 28800
	seconds < 64800
} else := [false, {"time-of-day-unauthorized"}]

and_3 := v if {
	results := [groups_2, time_of_day_0]
	normalized := [normalize_criterion_result(x) | x := results[i]]
	v := merge_with_and(normalized)
}

allow := v if {
	results := [or_0, or_1, and_0, and_1, or_2, and_2, and_3]
	normalized := [normalize_criterion_result(x) | x := results[i]]
	v := merge_with_or(normalized)
}

kubernetes_subresource_0 := [true, {"kubernetes-subresource-ok"}] if {
	count([true | some v; v = ["exec", "attach"][_]; v == input.kubernetes.subresource]) > 0
} else := [false, {"kubernetes-subresource-unauthorized"}]

kubernetes_namespace_1 := [true, {"kubernetes-namespace-ok"}] if {
	input.kubernetes.namespace == "prod"
} else := [false, {"kubernetes-namespace-unauthorized"}]

groups_3 := [true, {"groups-ok"}] if {
	record_type := "pomerium.io/DirectoryUser"
	session := get_session(input.session.id)
	directory_user := get_databroker_record(record_type, session.user_id)
	group_ids := object.get(directory_user, "group_ids", [])
	count([true | some v; v = group_ids[_]; v == "sre"]) > 0
} else := [false, {"groups-unauthorized"}] if {
	session := get_session(input.session.id)
	session.id != ""
} else := [false, {"user-unauthenticated"}]

not_0 := v if {
	results := [groups_3]
	normalized := [normalize_criterion_result(x) | x := results[i]]
	inverted := [invert_criterion_result(x) | x := results[i]]
	v := merge_with_and(inverted)
}

and_4 := v if {
	results := [kubernetes_subresource_0, kubernetes_namespace_1, not_0]
	normalized := [normalize_criterion_result(x) | x := results[i]]
	v := merge_with_and(normalized)
}

kubernetes_resource_0 := [true, {"kubernetes-resource-ok"}] if {
	input.kubernetes.resource == "secrets"
} else := [false, {"kubernetes-resource-unauthorized"}]

kubernetes_namespace_2 := [true, {"kubernetes-namespace-ok"}] if {
	input.kubernetes.namespace == "kube-system"
} else := [false, {"kubernetes-namespace-unauthorized"}]

groups_4 := [true, {"groups-ok"}] if {
	record_type := "pomerium.io/DirectoryUser"
	session := get_session(input.session.id)
	directory_user := get_databroker_record(record_type, session.user_id)
	group_ids := object.get(directory_user, "group_ids", [])
	count([true | some v; v = group_ids[_]; v == "admins"]) > 0
} else := [false, {"groups-unauthorized"}] if {
	session := get_session(input.session.id)
	session.id != ""
} else := [false, {"user-unauthenticated"}]

http_method_0 := [true, {"http-method-ok"}] if {
	input.http.method == "GET"
} else := [false, {"http-method-unauthorized"}]

nor_0 := v if {
	results := [groups_4, http_method_0]
	normalized := [normalize_criterion_result(x) | x := results[i]]
	inverted := [invert_criterion_result(x) | x := results[i]]
	v := merge_with_or(inverted)
}

and_5 := v if {
	results := [kubernetes_resource_0, kubernetes_namespace_2, nor_0]
	normalized := [normalize_criterion_result(x) | x := results[i]]
	v := merge_with_and(normalized)
}

email_1 := [true, {"email-ok"}] if {
	session := get_session(input.session.id)
	user := get_user(session)
	email := get_user_email(session, user)
	email == "mallory0@example.com"
} else := [false, {"email-unauthorized"}] if {
	session := get_session(input.session.id)
	session.id != ""
} else := [false, {"user-unauthenticated"}]

user_0 := [true, {"user-ok"}] if {
	session := get_session(input.session.id)
	user_id := session.user_id
	startswith(user_id, "banned-0-")
} else := [false, {"user-unauthorized"}] if {
	session := get_session(input.session.id)
	session.id != ""
} else := [false, {"user-unauthenticated"}]

or_3 := v if {
	results := [email_1, user_0]
	normalized := [normalize_criterion_result(x) | x := results[i]]
	v := merge_with_or(normalized)
}

deny := v if {
	results := [and_4, and_5, or_3]
	normalized := [normalize_criterion_result(x) | x := results[i]]
	v := merge_with_or(normalized)
}

get_databroker_record(record_type, record_id) := v if {
	v := input.databroker[record_type][record_id]
} else := null

get_session(id) := s if {
	s := get_databroker_record("type.googleapis.com/user.ServiceAccount", id)
	s != null
} else := s if {
	found := get_databroker_record("type.googleapis.com/session.Session", id)
	found != null
	object.get(found, "impersonate_session_id", "") != ""
	s := get_databroker_record("type.googleapis.com/session.Session", found.impersonate_session_id)
	s != null
} else := s if {
	s := get_databroker_record("type.googleapis.com/session.Session", id)
	s != null
	object.get(s, "impersonate_session_id", "") == ""
} else := {}

get_user(session) := u if {
	u := get_databroker_record("type.googleapis.com/user.User", session.user_id)
	u != null
} else := {}

get_user_email(session, user) := e if {
	e := user.email
} else := ""

object_get(obj, key, def) := v if {
	v := obj[key]
} else := v if {
	path := split(replace(key, ".", "/"), "/")
	count(path) > 1
	v := object.get(obj, path, def)
} else := def

invert_criterion_result(r) := out if {
	r[0]
	out := array.concat([false], array.slice(r, 1, count(r)))
} else := out if {
	not r[0]
	out := array.concat([true], array.slice(r, 1, count(r)))
}

normalize_criterion_result(r) := out if {
	is_boolean(r)
	out := [r, set()]
} else := r if {
	is_array(r)
} else := [false, set()]

object_union(objs) := {k: v |
	some k
	objs[_][k]
	vals := [x | some o in objs; x := o[k]]
	v := vals[count(vals) - 1]
}

merge_with_and(results) := [true, reasons, extra] if {
	held := [r | some r in results; r[0]]
	count(held) == count(results)
	reasons := union({r[1] | some r in held})
	extra := object_union({r[2] | some r in held})
} else := [false, reasons, extra] if {
	failed := [r | some r in results; not r[0]]
	reasons := union({r[1] | some r in failed})
	extra := object_union({r[2] | some r in failed})
}

merge_with_or(results) := [true, reasons, extra] if {
	held := [r | some r in results; r[0]]
	count(held) > 0
	reasons := union({r[1] | some r in held})
	extra := object_union({r[2] | some r in held})
} else := [false, reasons, extra] if {
	failed := [r | some r in results; not r[0]]
	reasons := union({r[1] | some r in failed})
	extra := object_union({r[2] | some r in failed})
}
