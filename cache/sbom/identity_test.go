package sbom

import "testing"

func TestParsePURLKeys(t *testing.T) {
	tests := []struct {
		purl string
		key  PackageKey
		ver  string
	}{
		{"pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1", PackageKey{"Maven", "org.apache.logging.log4j:log4j-core"}, "2.14.1"},
		{"pkg:npm/%40angular/core@12.0.0", PackageKey{"npm", "@angular/core"}, "12.0.0"},
		{"pkg:pypi/Django_REST.framework@3.0", PackageKey{"PyPI", "django-rest-framework"}, "3.0"},
		{"pkg:golang/github.com/Azure/azure-sdk@v1.2.3", PackageKey{"Go", "github.com/azure/azure-sdk"}, "v1.2.3"},
		{"pkg:deb/debian/libssl3@3.0.11-1~deb12u2?distro=debian-12&upstream=openssl", PackageKey{"Debian", "openssl"}, "3.0.11-1~deb12u2"},
		{"pkg:apk/alpine/libcrypto3@3.0.8-r3", PackageKey{"Alpine", "libcrypto3"}, "3.0.8-r3"},
		{"pkg:rpm/redhat/openssl@1.1.1k-7.el8", PackageKey{"Red Hat", "openssl"}, "1.1.1k-7.el8"},
		{"pkg:nuget/Newtonsoft.Json@9.0.1", PackageKey{"NuGet", "newtonsoft.json"}, "9.0.1"},
		{"pkg:cargo/Serde@1.0.0", PackageKey{"crates.io", "serde"}, "1.0.0"},
		{"pkg:generic/qualcomm_atheros_qca9563", PackageKey{"generic", "qualcomm_atheros_qca9563"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.purl, func(t *testing.T) {
			id, err := ParsePURL(tt.purl)
			if err != nil {
				t.Fatalf("ParsePURL: %v", err)
			}
			if got := id.Key(); got != tt.key {
				t.Errorf("got key %v, want %v", got, tt.key)
			}
			if id.Version != tt.ver {
				t.Errorf("got version %q, want %q", id.Version, tt.ver)
			}
		})
	}
}

func TestNewPackageKeyMatchesPURL(t *testing.T) {
	// OSV names and purls of the same package meet on one key.
	tests := []struct {
		ecosystem, name, purl string
	}{
		{"Maven", "org.apache.logging.log4j:log4j-core", "pkg:maven/org.apache.logging.log4j/log4j-core"},
		{"PyPI", "Django", "pkg:pypi/django"},
		{"npm", "@babel/core", "pkg:npm/%40babel/core"},
		{"Debian:12", "openssl", "pkg:deb/debian/openssl"},
		{"Alpine:v3.18", "openssl", "pkg:apk/alpine/openssl"},
		{"Go", "github.com/Azure/go-autorest", "pkg:golang/github.com/Azure/go-autorest"},
	}
	for _, tt := range tests {
		id, err := ParsePURL(tt.purl)
		if err != nil {
			t.Fatalf("ParsePURL(%q): %v", tt.purl, err)
		}
		if got, want := id.Key(), NewPackageKey(tt.ecosystem, tt.name); got != want {
			t.Errorf("purl %s gives key %v, OSV %s/%s gives %v", tt.purl, got, tt.ecosystem, tt.name, want)
		}
	}
}

func TestParseCPE(t *testing.T) {
	tests := []struct {
		in      string
		want    CPE
		wantErr bool
	}{
		{in: "cpe:2.3:a:wolfssl:wolfssl:4.8.1:*:*:*:*:*:*:*", want: CPE{"a", "wolfssl", "wolfssl", "4.8.1", "*"}},
		{in: `cpe:2.3:a:the_legion_of_the_bouncy_castle_inc.:bouncy\:castle:1.8.1:*:*:*:*:*:*:*`, want: CPE{"a", "the_legion_of_the_bouncy_castle_inc.", "bouncy:castle", "1.8.1", "*"}},
		{in: "cpe:/a:apache:log4j:2.14.1", want: CPE{"a", "apache", "log4j", "2.14.1", ""}},
		{in: "cpe:2.3:a:x", wantErr: true},
		{in: "cpe:2.3:q:v:p:1:*:*:*:*:*:*:*", wantErr: true},
		{in: "pkg:npm/x", wantErr: true},
		{in: "cpe:2.3:a:v:*:1:*:*:*:*:*:*:*", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseCPE(tt.in)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("got %+v, want an error", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseCPE: %v", err)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestPURLTypeForEcosystem(t *testing.T) {
	for eco, want := range map[string]string{"Maven": "maven", "Debian:11": "deb", "Alpine:v3.18": "apk", "Red Hat": "rpm", "PyPI": "pypi", "Nonesuch": ""} {
		if got := PURLTypeForEcosystem(eco); got != want {
			t.Errorf("PURLTypeForEcosystem(%q) = %q, want %q", eco, got, want)
		}
	}
}
