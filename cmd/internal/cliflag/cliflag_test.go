package cliflag

import (
	"flag"
	"io"
	"slices"
	"testing"
)

func TestParseInterspersed(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantPos []string
		wantVer string
		wantFix bool
	}{
		{"flags first", []string{"-version", "1.0", "-security-fix", "dir", "file"}, []string{"dir", "file"}, "1.0", true},
		{"flags last", []string{"dir", "file", "-version", "1.0", "-security-fix"}, []string{"dir", "file"}, "1.0", true},
		{"boolean before positional", []string{"dir", "-security-fix", "file", "-version=2"}, []string{"dir", "file"}, "2", true},
		{"after double dash", []string{"dir", "--", "-version", "x"}, []string{"dir", "-version", "x"}, "", false},
		{"none", nil, nil, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := flag.NewFlagSet("test", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			version := fs.String("version", "", "")
			fix := fs.Bool("security-fix", false, "")
			if err := Parse(fs, tt.args); err != nil {
				t.Fatal(err)
			}
			if got := fs.Args(); !slices.Equal(got, tt.wantPos) && !(len(got) == 0 && len(tt.wantPos) == 0) {
				t.Errorf("positional arguments %q, want %q", got, tt.wantPos)
			}
			if *version != tt.wantVer {
				t.Errorf("-version %q, want %q", *version, tt.wantVer)
			}
			if *fix != tt.wantFix {
				t.Errorf("-security-fix %t, want %t", *fix, tt.wantFix)
			}
		})
	}
}

func TestParseUnknownFlag(t *testing.T) {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if err := Parse(fs, []string{"dir", "-nope"}); err == nil {
		t.Error("an unknown flag after a positional argument was accepted")
	}
}
