package connstring

import (
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantErr string // "" for none
	}{
		{name: "URL", in: "postgres://portcullis:pw@db.example:5432/portcullis?sslmode=verify-full"},
		{name: "key=value", in: "host=db.example user=portcullis password=pw dbname=portcullis"},
		{name: "empty", in: " ", wantErr: "it is empty"},
		{name: "bad port", in: "postgres://portcullis:hunter2-very-secret@db.example:notaport/portcullis", wantErr: "parsing the database connection string"},
		{name: "broken URL", in: "postgres://portcullis:hunter2-very-secret@db.example:5432/%zz", wantErr: "parsing the database connection string"},
		{name: "bad sslmode", in: "host=db.example password=hunter2-very-secret sslmode=sometimes", wantErr: "sslmode is invalid"},
		{name: "bad pool setting", in: "postgres://portcullis:hunter2-very-secret@db.example/portcullis?pool_max_conns=many", wantErr: "pool_max_conns"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Check(tt.in)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("got %v, want no error", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("got %v, want an error saying %q", err, tt.wantErr)
			case err != nil && strings.Contains(err.Error(), "hunter2"):
				t.Errorf("the error shows the password: %v", err)
			}
		})
	}
}

func FuzzCheck(f *testing.F) {
	f.Add("postgres://", "hunter2-very-secret", "@db.example:x/db")
	f.Add("postgresql://u:", "pw-pw-pw-pw", "@[::1/db")
	f.Add("host=h password=", "'quoted secret'", " sslmode=nope")
	f.Add("user=u password=", "sec ret", " port=p")
	f.Fuzz(func(t *testing.T, before, password, after string) {
		if len(password) < 8 {
			return // too short to tell from a coincidence
		}
		err := Check(before + password + after)
		if err == nil || !strings.Contains(err.Error(), password) {
			return
		}
		// The message may hold it by coincidence: it is in the rest of
		// the string, or in what is said of the string without it.
		masked := strings.Repeat("\x00", len(password))
		if strings.Contains(before+after, password) {
			return
		}
		if e := Check(before + masked + after); e != nil && strings.Contains(e.Error(), password) {
			return
		}
		t.Errorf("the error shows the password %q: %v", password, err)
	})
}
