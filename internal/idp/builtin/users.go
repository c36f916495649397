package builtin

import (
	"errors"
	"fmt"
	"io"
	"net/mail"
	"os"
	"regexp"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
	"golang.org/x/crypto/bcrypt"

	"github.com/portcullis-proxy/portcullis/internal/identity"
)

// A User is a person who can sign in to the built-in provider.
type User struct {
	// Email is what the person types to sign in (compared without regard
	// to case) and the email claim, as written. Required.
	Email string `yaml:"email"`
	// Name is the name claim; the email address when empty.
	Name string `yaml:"name"`
	// Groups is the groups claim, in order.
	Groups []string `yaml:"groups"`
	// PasswordHash is the bcrypt hash of the password ($2a$, $2b$ or $2y$).
	// Plain-text passwords are never accepted.
	PasswordHash string `yaml:"password_hash"`
}

const (
	// maxUsersFileSize bounds the users file: it is read whole.
	maxUsersFileSize = 1 << 20
	// maxBcryptCost bounds the work of one password check. Cost 17 takes
	// about ten seconds a try on a laptop, which turns every sign-in (and
	// every wrong guess) into a denial of service.
	maxBcryptCost = 16
	// maxFieldLength bounds names and groups, which end up in tokens and
	// in an Impersonate-Group header each.
	maxFieldLength = 256
)

// hashHint tells a person how to make a bcrypt hash. It must stay true:
// name only tools that exist.
const hashHint = "make one with: htpasswd -nbBC 10 '' 'the-password' | cut -d: -f2"

// bcryptHash is the modular crypt format of bcrypt: version, two-digit cost,
// 22 characters of salt and 31 of hash in bcrypt's base64 alphabet.
var bcryptHash = regexp.MustCompile(`^\$2[aby]\$[0-9]{2}\$[./A-Za-z0-9]{53}$`)

// usersKeys are the keys of one user in the users file, in the order the
// documentation lists them.
var usersKeys = []string{"email", "name", "groups", "password_hash"}

// LoadUsers reads the users file at path: a YAML list of users, each
// {email, name (optional), groups, password_hash}. Every problem found is
// reported, each with the file name and line, joined with errors.Join. The
// file's values are never quoted back in errors, since a password might
// have been typed where its hash belongs.
func LoadUsers(path string) ([]User, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("loading users: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxUsersFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("loading users: reading %s: %w", path, err)
	}
	return parseUsers(path, data)
}

// HashPassword returns the bcrypt hash of pw at bcrypt.DefaultCost, for
// the password_hash of a user. Neither binary hashes passwords (users make
// theirs with htpasswd: docs/identity-providers.md); tests, e2e and the
// demo use it.
//
//deadcode:testonly tests, e2e and the demo make their users' hashes here
func HashPassword(pw string) (string, error) {
	switch {
	case pw == "":
		return "", errors.New("hashing the password: the password is empty")
	case len(pw) > 72:
		// bcrypt ignores everything after 72 bytes: refuse rather than
		// accept a password of which only a part counts.
		return "", fmt.Errorf("hashing the password: it is %d bytes long; bcrypt uses at most 72", len(pw))
	}
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.DefaultCost)
	if err != nil {
		return "", fmt.Errorf("hashing the password: %w", err)
	}
	return string(h), nil
}

// usersProblem is one problem in a users file or list.
type usersProblem struct {
	source string // "users.yaml:12", or "user 2" for users given in code
	msg    string
}

func (p *usersProblem) Error() string { return p.source + ": " + p.msg }

// usersParser collects the problems of one users file.
type usersParser struct {
	name     string
	problems []error
}

func (p *usersParser) add(n *yaml.Node, format string, args ...any) {
	src := p.name
	if n != nil && n.Line > 0 {
		src += ":" + strconv.Itoa(n.Line)
	}
	p.problems = append(p.problems, &usersProblem{source: src, msg: fmt.Sprintf(format, args...)})
}

// parseUsers decodes and checks a users file; name is used in errors.
func parseUsers(name string, data []byte) ([]User, error) {
	p := &usersParser{name: name}
	if len(data) > maxUsersFileSize {
		p.add(nil, "the file is larger than %d bytes", maxUsersFileSize)
		return nil, p.err()
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		// yaml's messages carry "line N" and quote at most a token.
		p.add(nil, "not valid YAML: %s", strings.TrimPrefix(err.Error(), "yaml: "))
		return nil, p.err()
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		p.add(nil, "the file has no users: want a list such as\n  - email: alice@example.com\n    groups: [dev]\n    password_hash: $2y$10$...")
		return nil, p.err()
	}
	root := doc.Content[0]
	if root.Kind != yaml.SequenceNode {
		p.add(root, "want a list of users (each item beginning with \"- email:\"), got %s", nodeKind(root))
		return nil, p.err()
	}
	var users []User
	var lines []int
	for i, item := range root.Content {
		u, ok := p.user(i+1, item)
		if ok {
			users = append(users, u)
			lines = append(lines, item.Line)
		}
	}
	if len(root.Content) == 0 {
		p.add(root, "the list of users is empty")
	}
	seen := map[string]int{}
	for i, u := range users {
		key := identity.EmailKey(u.Email)
		if first, dup := seen[key]; dup {
			p.problems = append(p.problems, &usersProblem{
				source: name + ":" + strconv.Itoa(lines[i]),
				msg:    fmt.Sprintf("user %s: the email is already used by the user at line %d (emails are compared without regard to the case of ASCII letters)", u.Email, first),
			})
			continue
		}
		seen[key] = lines[i]
	}
	if err := p.err(); err != nil {
		return nil, err
	}
	return users, nil
}

func (p *usersParser) err() error {
	if len(p.problems) == 0 {
		return nil
	}
	return fmt.Errorf("loading users: %w", errors.Join(p.problems...))
}

// user decodes the n-th item of the list. ok is false if it had problems.
func (p *usersParser) user(n int, item *yaml.Node) (User, bool) {
	before := len(p.problems)
	who := fmt.Sprintf("user %d", n)
	if item.Kind != yaml.MappingNode {
		p.add(item, "%s: want a mapping with keys %s, got %s", who, strings.Join(usersKeys, ", "), nodeKind(item))
		return User{}, false
	}
	// Name the user by email in later messages when it is readable.
	for i := 0; i+1 < len(item.Content); i += 2 {
		if k, v := item.Content[i], item.Content[i+1]; k.Value == "email" && v.Kind == yaml.ScalarNode && checkEmail(v.Value) == "" {
			who = "user " + v.Value
		}
	}
	var u User
	seen := map[string]int{}
	reported := map[string]bool{} // keys whose value already had a problem
	for i := 0; i+1 < len(item.Content); i += 2 {
		k, v := item.Content[i], item.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			p.add(k, "%s: keys must be plain words such as email", who)
			continue
		}
		if line, dup := seen[k.Value]; dup {
			p.add(k, "%s: %s is given twice (first at line %d)", who, k.Value, line)
			continue
		}
		seen[k.Value] = k.Line
		n := len(p.problems)
		switch k.Value {
		case "email":
			if s, ok := p.scalar(who, k.Value, v); ok {
				u.Email = s
			}
		case "name":
			if s, ok := p.scalar(who, k.Value, v); ok {
				u.Name = s
			}
		case "groups":
			u.Groups = p.groups(who, v)
		case "password_hash":
			if s, ok := p.scalar(who, k.Value, v); ok {
				u.PasswordHash = s
			}
		case "password", "pass", "passwd":
			p.add(k, "%s: %s: plain-text passwords are not accepted; put a bcrypt hash in password_hash (%s)", who, k.Value, hashHint)
		default:
			p.add(k, "%s: unknown key %q: want %s", who, printable(k.Value), strings.Join(usersKeys, ", "))
		}
		reported[k.Value] = len(p.problems) > n
	}
	for _, pr := range checkUser(u) {
		if reported[pr.key] {
			continue
		}
		node := item
		for i := 0; i+1 < len(item.Content); i += 2 {
			if item.Content[i].Value == pr.key {
				node = item.Content[i+1]
			}
		}
		p.add(node, "%s: %s", who, pr.msg)
	}
	return u, len(p.problems) == before
}

// scalar returns v as a string; YAML null and non-scalars are problems.
func (p *usersParser) scalar(who, key string, v *yaml.Node) (string, bool) {
	if v.Kind == yaml.AliasNode {
		p.add(v, "%s: %s: anchors and aliases are not supported", who, key)
		return "", false
	}
	if v.Kind != yaml.ScalarNode || v.Tag == "!!null" {
		p.add(v, "%s: %s: want a string, got %s", who, key, nodeKind(v))
		return "", false
	}
	return v.Value, true
}

// groups returns the list in v; null or [] is no groups.
func (p *usersParser) groups(who string, v *yaml.Node) []string {
	if v.Kind == yaml.ScalarNode && v.Tag == "!!null" {
		return nil
	}
	if v.Kind != yaml.SequenceNode {
		p.add(v, "%s: groups: want a list such as [dev, ops], got %s", who, nodeKind(v))
		return nil
	}
	out := make([]string, 0, len(v.Content))
	for _, g := range v.Content {
		if s, ok := p.scalar(who, "groups", g); ok {
			out = append(out, s)
		}
	}
	return out
}

// nodeKind names what a YAML node is, for messages.
func nodeKind(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	case yaml.AliasNode:
		return "an alias"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "nothing (null)"
		}
		return "a single value"
	}
	return "nothing"
}

// userProblem is a problem with one field of a user.
type userProblem struct {
	key string // email, name, groups, password_hash
	msg string
}

// checkUser reports what is wrong with u, one problem per field value.
func checkUser(u User) []userProblem {
	var out []userProblem
	if msg := checkEmail(u.Email); msg != "" {
		out = append(out, userProblem{"email", msg})
	}
	if msg := checkText(u.Name); msg != "" {
		out = append(out, userProblem{"name", "name " + msg})
	}
	seen := map[string]bool{}
	for i, g := range u.Groups {
		switch msg := checkText(g); {
		case g == "":
			out = append(out, userProblem{"groups", fmt.Sprintf("groups: group %d is empty", i+1)})
		case msg != "":
			out = append(out, userProblem{"groups", fmt.Sprintf("groups: group %d %s", i+1, msg)})
		case strings.TrimSpace(g) != g:
			out = append(out, userProblem{"groups", fmt.Sprintf("groups: group %d begins or ends with a space", i+1)})
		case seen[g]:
			out = append(out, userProblem{"groups", fmt.Sprintf("groups: group %q is listed twice", g)})
		}
		seen[g] = true
	}
	if msg := checkHash(u.PasswordHash); msg != "" {
		out = append(out, userProblem{"password_hash", msg})
	}
	return out
}

func checkEmail(email string) string {
	switch {
	case email == "":
		return "email is missing"
	case len(email) > 254:
		return "email is longer than 254 characters"
	case !utf8.ValidString(email) || strings.IndexFunc(email, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
		return "email contains spaces or control characters"
	}
	// An address only: "Alice <alice@example.com>" parses but is not one.
	a, err := mail.ParseAddress(email)
	if err != nil || a.Name != "" || a.Address != email {
		return "email is not an email address: want name@domain"
	}
	return ""
}

// checkText checks a name or group: these reach tokens and HTTP headers.
func checkText(s string) string {
	switch {
	case len(s) > maxFieldLength:
		return fmt.Sprintf("is longer than %d bytes", maxFieldLength)
	case !utf8.ValidString(s):
		return "is not valid UTF-8"
	case strings.IndexFunc(s, unicode.IsControl) >= 0:
		return "contains control characters"
	}
	return ""
}

func checkHash(h string) string {
	if h == "" {
		return "password_hash is missing (" + hashHint + ")"
	}
	if !bcryptHash.MatchString(h) {
		if !strings.HasPrefix(h, "$") {
			return "password_hash is not a bcrypt hash; it looks like a plain-text password, which is never accepted (" + hashHint + ")"
		}
		return "password_hash is not a bcrypt hash: want $2a$, $2b$ or $2y$, a two-digit cost and 53 characters (" + hashHint + ")"
	}
	cost, err := bcrypt.Cost([]byte(h))
	if err != nil {
		return "password_hash is not a bcrypt hash: its cost is out of range (" + hashHint + ")"
	}
	if cost > maxBcryptCost {
		return fmt.Sprintf("password_hash has cost %d, which makes every sign-in take too long: use 10 to %d", cost, maxBcryptCost)
	}
	return ""
}

// printable makes s safe to quote in a message.
func printable(s string) string {
	if len(s) > 40 {
		s = s[:40] + "…"
	}
	return strings.ToValidUTF8(s, "?")
}
