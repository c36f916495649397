package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
)

// APIVersion is the API version of every object this package reads or
// writes: Event, EventList and Policy.
const APIVersion = "audit.k8s.io/v1"

// Level says how much of a request is recorded (audit.k8s.io/v1 Level).
type Level string

// The levels, least to most. Portcullis records metadata only: Request and
// RequestResponse are accepted in a policy, as kube-apiserver's, and record
// what Metadata does.
const (
	// LevelNone records nothing.
	LevelNone Level = "None"
	// LevelMetadata records who, what, when and the outcome, no bodies.
	LevelMetadata Level = "Metadata"
	// LevelRequest is Metadata plus the request body in kube-apiserver.
	LevelRequest Level = "Request"
	// LevelRequestResponse is Request plus the response body in
	// kube-apiserver.
	LevelRequestResponse Level = "RequestResponse"
)

// Stage is the point in handling a request at which an event is written
// (audit.k8s.io/v1 Stage).
type Stage string

// The stages, in the order a request passes them.
const (
	// StageRequestReceived: the request has been read, nothing answered.
	StageRequestReceived Stage = "RequestReceived"
	// StageResponseStarted: the response headers have been sent and the
	// body goes on (a watch, a log follow, an exec stream).
	StageResponseStarted Stage = "ResponseStarted"
	// StageResponseComplete: the response has been sent in full.
	StageResponseComplete Stage = "ResponseComplete"
	// StagePanic: handling the request panicked.
	StagePanic Stage = "Panic"
)

// ExtraSessionID is the UserInfo.Extra key under which an event names the
// Portcullis session a request came from, as SessionHash of its id.
const ExtraSessionID = "portcullis.io/session-id"

// SessionHash is what an event records of a session id: the first 16 hex
// digits of its SHA-256. Events from one session share it, so a reader can
// follow a session, but the audit log, which is read by more people than
// the session store, cannot be used to replay the session's cookie.
func SessionHash(sessionID string) string {
	sum := sha256.Sum256([]byte(sessionID))
	return hex.EncodeToString(sum[:8])
}

// Event is an audit.k8s.io/v1 Event. Its JSON is what kube-apiserver writes:
// the same field names, omitted when empty where kube-apiserver omits
// them, and timestamps as metav1.MicroTime. Portcullis does not record
// request or response bodies, the impersonated user (Portcullis's
// impersonation is how it forwards User, not a second identity) or object
// resource versions, so those fields are absent.
type Event struct {
	// Kind is "Event"; NewEvent sets it.
	Kind string `json:"kind,omitempty"`
	// APIVersion is "audit.k8s.io/v1"; NewEvent sets it.
	APIVersion string `json:"apiVersion,omitempty"`
	// Level is the level the policy chose for the request.
	Level Level `json:"level"`
	// AuditID identifies the request; every stage of a request shares it.
	AuditID string `json:"auditID"`
	// Stage is the stage at which the event was written.
	Stage Stage `json:"stage"`
	// RequestURI is the request's path and query, as the client sent it.
	RequestURI string `json:"requestURI"`
	// Verb is the Kubernetes verb (get, list, watch, create, …) or, for a
	// non-resource request, the lower-case HTTP method.
	Verb string `json:"verb"`
	// User is who made the request: for Portcullis the person (username =
	// email, groups, Extra[ExtraSessionID] = SessionHash of the session id),
	// never the service account Portcullis forwards with.
	User UserInfo `json:"user"`
	// ImpersonatedUser is who the cluster was asked to act as, when that is
	// not the person as they are: a route's identity mapping (another
	// claim, prefixes, a group filter) or kubectl --as, with the person in
	// Extra["portcullis.io/impersonator"]. Nil when Kubernetes sees the
	// person's email and groups. kube-apiserver's own event for the
	// request has the same impersonatedUser.
	ImpersonatedUser *UserInfo `json:"impersonatedUser,omitempty"`
	// SourceIPs are the client's address and the addresses that forwarded
	// the request, client first.
	SourceIPs []string `json:"sourceIPs,omitempty"`
	// UserAgent is the client's User-Agent.
	UserAgent string `json:"userAgent,omitempty"`
	// ObjectRef is the object the request is about; nil for a non-resource
	// request.
	ObjectRef *ObjectReference `json:"objectRef,omitempty"`
	// ResponseStatus is the outcome: the HTTP code, and for a failure the
	// message and reason. Nil at StageRequestReceived.
	ResponseStatus *ResponseStatus `json:"responseStatus,omitempty"`
	// RequestReceivedTimestamp is when the request arrived.
	RequestReceivedTimestamp time.Time `json:"requestReceivedTimestamp"`
	// StageTimestamp is when the request reached Stage.
	StageTimestamp time.Time `json:"stageTimestamp"`
	// Annotations carry what Portcullis knows beyond Kubernetes, under
	// portcullis.io/ keys, next to the authorization.k8s.io/decision and
	// authorization.k8s.io/reason that kube-apiserver writes.
	Annotations Annotations `json:"annotations,omitempty"`
}

// UserInfo is who made a request (authentication.k8s.io/v1 UserInfo).
type UserInfo struct {
	// Username is the user's name: for Portcullis, their email address.
	Username string `json:"username,omitempty"`
	// UID identifies the user across name changes, when the identity
	// provider gives one.
	UID string `json:"uid,omitempty"`
	// Groups are the user's groups.
	Groups []string `json:"groups,omitempty"`
	// Extra holds further facts about the user, such as ExtraSessionID.
	Extra map[string][]string `json:"extra,omitempty"`
}

// ObjectReference is the object a resource request is about (the
// audit.k8s.io/v1 ObjectReference without resourceVersion).
type ObjectReference struct {
	Resource    string `json:"resource,omitempty"`
	Namespace   string `json:"namespace,omitempty"`
	Name        string `json:"name,omitempty"`
	UID         string `json:"uid,omitempty"`
	APIGroup    string `json:"apiGroup,omitempty"` // "" for the core group
	APIVersion  string `json:"apiVersion,omitempty"`
	Subresource string `json:"subresource,omitempty"`
}

// ResponseStatus is the outcome of a request: the fields of the
// metav1.Status that kube-apiserver records.
type ResponseStatus struct {
	// Code is the HTTP status code.
	Code int `json:"code,omitempty"`
	// Status is "Success" or "Failure"; kube-apiserver leaves it empty for
	// a success it did not write a Status for.
	Status string `json:"status,omitempty"`
	// Message says what went wrong, for the reader.
	Message string `json:"message,omitempty"`
	// Reason is the machine-readable reason of a failure (Forbidden,
	// Unauthorized, …).
	Reason string `json:"reason,omitempty"`
}

// NewEvent returns an Event of kind Event, apiVersion audit.k8s.io/v1, at
// level, for the request auditID, received at received; the caller fills
// in the rest.
func NewEvent(level Level, auditID string, received time.Time) *Event {
	return &Event{
		Kind:                     "Event",
		APIVersion:               APIVersion,
		Level:                    level,
		AuditID:                  auditID,
		RequestReceivedTimestamp: received,
	}
}

// plainEvent is Event without its JSON methods, so that UnmarshalJSON can
// use the default decoding for every field it does not override.
type plainEvent Event

// eventJSON overrides Event's timestamps with their wire form: a field at
// the outer level hides the embedded field of the same JSON name.
type eventJSON struct {
	*plainEvent
	RequestReceivedTimestamp microTime `json:"requestReceivedTimestamp"`
	StageTimestamp           microTime `json:"stageTimestamp"`
}

// MarshalJSON writes e as kube-apiserver does (appendEvent).
func (e Event) MarshalJSON() ([]byte, error) {
	return appendEvent(make([]byte, 0, 1024), &e), nil
}

// UnmarshalJSON reads an event as kube-apiserver writes it.
func (e *Event) UnmarshalJSON(data []byte) error {
	w := eventJSON{plainEvent: (*plainEvent)(e)}
	if err := json.Unmarshal(data, &w); err != nil {
		return err
	}
	e.RequestReceivedTimestamp = time.Time(w.RequestReceivedTimestamp)
	e.StageTimestamp = time.Time(w.StageTimestamp)
	return nil
}

// MarshalJSON writes s as kube-apiserver writes a metav1.Status, whose
// ListMeta is always present, as "metadata":{}.
func (s ResponseStatus) MarshalJSON() ([]byte, error) {
	return appendStatus(nil, &s), nil
}

// rfc3339Micro is metav1.RFC3339Micro, the layout of metav1.MicroTime.
const rfc3339Micro = "2006-01-02T15:04:05.000000Z07:00"

// microTime is a time in JSON as metav1.MicroTime: RFC 3339 in UTC with
// exactly six fractional digits, or null for the zero time. Only read:
// appendMicroTime writes it.
type microTime time.Time

// UnmarshalJSON reads t as metav1.MicroTime does, but keeps it in UTC
// (metav1 converts to local time, which only changes how it prints).
func (t *microTime) UnmarshalJSON(data []byte) error {
	if string(data) == "null" {
		*t = microTime{}
		return nil
	}
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return err
	}
	tt, err := time.Parse(rfc3339Micro, s)
	if err != nil {
		return fmt.Errorf("reading a timestamp: %w", err)
	}
	*t = microTime(tt.UTC())
	return nil
}
