// govulncheck's vulnerability database, as data: data/osv of the pinned
// golang.org/x/vulndb module holds every Go vulnerability report as OSV
// JSON, the reports vuln.go.dev serves, and govulncheck reads a directory
// of OSV files as its database. Nothing here is built or imported, so
// `go mod tidy` would drop the requirement: do not run it here. A fresher
// database is a newer pin:
//
//	go mod edit -require=golang.org/x/vulndb@VERSION && go mod download golang.org/x/vulndb
module github.com/portcullis-proxy/portcullis/internal/testenv/tools/vulndb

go 1.26.0

require golang.org/x/vulndb v0.0.0-20261105234957-e22db6528018
