package config

import "crypto/rand"

// GenerateMissingSecrets fills COOKIE_SECRET and SHARED_SECRET with 32
// random bytes each when they are unset, and returns the names of those it
// generated.
//
// That is only right for a single replica in development: sessions and
// tokens then die with the process, and replicas that each generated
// their own secrets cannot read one another's cookies or tokens. The
// server must log a loud warning naming what was generated and saying
// that with more than one replica these secrets must be set.
func (o *Options) GenerateMissingSecrets() (generated []string) {
	for _, s := range []struct {
		name   string
		secret *[]byte
	}{
		{"COOKIE_SECRET", &o.CookieSecret},
		{"SHARED_SECRET", &o.SharedSecret},
	} {
		if len(*s.secret) != 0 {
			continue
		}
		b := make([]byte, 32)
		rand.Read(b) // never fails; crashes the program if it cannot
		*s.secret = b
		generated = append(generated, s.name)
	}
	return generated
}
