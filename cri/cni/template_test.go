package cni

import (
	"bytes"
	"strings"
	"testing"
	"text/template"
)

var templateTestData = TemplateData{
	PodCIDR:       "10.244.1.0/24",
	PodCIDRRanges: []string{"10.244.1.0/24", "fd00:10:244:1::/64"},
	Routes:        []string{"0.0.0.0/0", "::/0"},
}

// textTemplate renders with the standard library's text/template, the
// behaviour renderTemplate follows (tests only: see renderTemplate for why
// hulld does not link it).
func textTemplate(text string, data TemplateData) (string, error) {
	t, err := template.New("t").Option("missingkey=error").Parse(text)
	if err != nil {
		return "", err
	}
	var b bytes.Buffer
	err = t.Execute(&b, data)
	return b.String(), err
}

// refused reports an error renderTemplate gives for what it leaves out on
// purpose (functions and types a CNI template's data cannot need) or for
// a template past its bounds, which text/template may take forever on.
func refused(err error) bool {
	if err == nil {
		return false
	}
	for _, s := range []string{"not supported", "not defined", "nested more than", "more than 1048576 steps", "larger than"} {
		if strings.Contains(err.Error(), s) {
			return true
		}
	}
	return false
}

// templateCases are templates whose rendering is compared with
// text/template's, and the fuzzer's seeds.
var templateCases = []string{
	// containerd's documented example.
	`{"ranges": [{{range $i, $range := .PodCIDRRanges}}{{if $i}}, {{end}}[{"subnet": "{{$range}}"}]{{end}}],
 "routes": [{{range $i, $route := .Routes}}{{if $i}}, {{end}}{"dst": "{{$route}}"}{{end}}]}`,
	`{{.PodCIDR}} {{$.PodCIDR}} {{.PodCIDRRanges}} {{.Routes}}`,
	`{{range .PodCIDRRanges}}[{{.}}]{{else}}none{{end}}`,
	`{{range $r := .Routes}}{{$r}};{{end}}`,
	`{{range $i, $r := .Routes}}{{if eq $i 1}}{{break}}{{end}}{{$r}}{{end}}`,
	`{{range $i, $r := .PodCIDRRanges}}{{if not $i}}{{continue}}{{end}}{{$r}}{{end}}`,
	`{{range 3}}{{.}}{{end}} {{range $v := 2}}{{$v}}{{end}}`,
	`{{range $i, $v := 2}}{{end}}`,
	`{{with .PodCIDR}}<{{.}}>{{else}}no{{end}} {{with ""}}x{{else}}empty{{end}}`,
	`{{with $x := .Routes}}{{len $x}}{{end}}`,
	`{{$x := .PodCIDR}}{{$x}} {{$x = "other"}}{{$x}}`,
	`{{$n := 0}}{{range .Routes}}{{$n = len .}}{{end}}{{$n}}`,
	`{{if and .PodCIDR (gt (len .Routes) 1)}}dual{{else if .PodCIDR}}single{{else}}none{{end}}`,
	`{{or "" .PodCIDR}} {{and 1 0 "x"}} {{or 0 ""}} {{not .Routes}} {{.Routes | len}}`,
	`{{index .PodCIDRRanges 1}} {{index "ab" 0}} {{index .Routes}}`,
	`{{printf "%q/%d" .PodCIDR 3}} {{print 1 "a" 2}} {{println .Routes}}|`,
	`{{.PodCIDR | printf "%s-%s" "x"}}`,
	`{{(index .Routes 0)}} {{(.PodCIDRRanges) | len}}`,
	`{{eq .PodCIDR "a" "10.244.1.0/24"}} {{ne 1 2}} {{lt 1.0 2.5}} {{le "a" "b"}} {{ge 2 2}} {{eq true true}} {{ne false true}}`,
	`{{define "r"}}({{.}}){{end}}{{template "r" .PodCIDR}}{{range .Routes}}{{template "r" .}}{{end}}`,
	`{{block "b" .Routes}}{{len .}}{{end}}`,
	`{{- .PodCIDR -}}   x   {{- /* a comment */ -}} y`,
	`{{1.5}} {{0x10}} {{'a'}} {{true}} {{"s"}} {{` + "`raw`" + `}}`,
	// Errors both must give.
	`{{.NoSuchField}}`,
	`{{.PodCIDR.Field}}`,
	`{{index .Routes 5}}`,
	`{{len 3}}`,
	`{{eq 1 "a"}}`,
	`{{lt 1 2.5}}`,
	`{{18446744073709551615}}`,
	`{{lt true false}}`,
	`{{range .PodCIDR}}{{end}}`,
	`{{template "missing"}}`,
	`{{$x = 1}}`,
	`{{.PodCIDR 1}}`,
	`{{"a" | .PodCIDR}}`,
	`{{nil}}`,
	`{{.}}`,
	`{{if}}{{end}}`,
	`{{printf 1}}`,
	`{{not}}`,
}

func TestRenderTemplateMatchesTextTemplate(t *testing.T) {
	for _, text := range templateCases {
		want, wantErr := textTemplate(text, templateTestData)
		got, err := renderTemplate("t", text, templateTestData)
		if wantErr != nil {
			if err == nil {
				t.Errorf("%s: rendered %q, text/template fails: %v", text, got, wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v; text/template renders %q", text, err, want)
			continue
		}
		if string(got) != want {
			t.Errorf("%s:\n got %q\nwant %q", text, got, want)
		}
	}
}

func TestRenderTemplateErrors(t *testing.T) {
	for text, want := range map[string]string{
		`{{.Nope}}`:         "can't evaluate field Nope",
		`{{.PodCIDR.X}}`:    "field X in type string",
		`{{html .PodCIDR}}`: `function "html" not defined`,
		`{{define "a"}}{{template "a"}}{{end}}{{template "a"}}`: "nested more than 1000 deep",
		`{{range .PodCIDR}}{{end}}`:                             "range can't iterate over 10.244.1.0/24",
		`{{1i}}`:                                                "number 1i is not supported",
		`{{index .Routes "a"}}`:                                 "cannot index []string with string",
		`{{$y}}`:                                                "undefined variable",
		`{{if .PodCIDR}}`:                                       "unexpected EOF",
		`{{9223372036854775807 | print}}`:                       "", // fits in int on 64-bit hosts
	} {
		_, err := renderTemplate("t", text, templateTestData)
		if want == "" {
			if err != nil {
				t.Errorf("%s: %v", text, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want one containing %q", text, err, want)
		}
	}
}

// FuzzRenderTemplate checks renderTemplate against text/template: on any
// template both accept, the output is the same, and what text/template
// refuses renderTemplate refuses too.
func FuzzRenderTemplate(f *testing.F) {
	for _, s := range templateCases {
		f.Add(s, "10.0.0.0/8", true)
	}
	f.Fuzz(func(t *testing.T, text, cidr string, two bool) {
		data := TemplateData{PodCIDR: cidr, PodCIDRRanges: []string{cidr}, Routes: []string{"0.0.0.0/0"}}
		if two {
			data.PodCIDRRanges = append(data.PodCIDRRanges, "fd00::/64")
			data.Routes = append(data.Routes, "::/0")
		}
		got, err := renderTemplate("t", text, data)
		if refused(err) {
			return
		}
		want, wantErr := textTemplate(text, data)
		switch {
		case wantErr != nil && err == nil:
			t.Fatalf("%q: rendered %q, text/template fails: %v", text, got, wantErr)
		case wantErr == nil && err != nil:
			t.Fatalf("%q: %v; text/template renders %q", text, err, want)
		case wantErr == nil && string(got) != want:
			t.Fatalf("%q:\n got %q\nwant %q", text, got, want)
		}
	})
}
