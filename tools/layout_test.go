package tools

import (
	"bytes"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// repoFiles lists the repository's tracked files, relative to its root.
func repoFiles(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("git", "-C", "..", "ls-files", "-z").Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	var files []string
	for _, f := range strings.Split(string(out), "\x00") {
		if f != "" {
			files = append(files, f)
		}
	}
	return files
}

// layoutPaths returns the paths README's "## Layout" table names in its
// first column (each in backquotes, several per row allowed), without a
// trailing slash.
func layoutPaths(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(raw), "\n## Layout\n")
	if !ok {
		t.Fatal(`README.md has no "## Layout" section`)
	}
	if i := strings.Index(section, "\n## "); i >= 0 {
		section = section[:i]
	}
	quoted := regexp.MustCompile("`([^`]+)`")
	var paths []string
	for _, l := range strings.Split(section, "\n") {
		if !strings.HasPrefix(l, "| `") {
			continue
		}
		first := strings.SplitN(l, "|", 3)[1]
		for _, m := range quoted.FindAllStringSubmatch(first, -1) {
			paths = append(paths, strings.TrimSuffix(m[1], "/"))
		}
	}
	return paths
}

// TestLayoutListsEveryPackage: README's layout table has a row for every Go
// package (`go list ./...`), every module of its own under tools/, the
// Python package and the deployment files, so a newcomer finds each one.
func TestLayoutListsEveryPackage(t *testing.T) {
	cmd := exec.Command("go", "list", "-f", "{{.Dir}}", "./...")
	cmd.Dir = ".."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list ./...: %v", err)
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"openedx", "deploy", "deploy/k8s", "deploy/tutor", "docs"}
	for _, dir := range strings.Fields(string(out)) {
		rel, err := filepath.Rel(root, dir)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, filepath.ToSlash(rel))
	}
	for _, f := range repoFiles(t) {
		if strings.HasPrefix(f, "tools/") && path.Base(f) == "go.mod" {
			want = append(want, path.Dir(f))
		}
	}
	listed := layoutPaths(t)
	for _, p := range want {
		if !slices.Contains(listed, p) {
			t.Errorf("README.md's layout table has no row for `%s`", p)
		}
	}
}

// designRef is a mention of the capitalised design document of the early
// history of the project: the word in capitals, with or without ".md".
var designRef = regexp.MustCompile(`\b` + "DES" + `IGN\b`)

// TestDesignDocReferences: the project's design is docs/design.md; no file
// names a capitalised design document that the repository does not hold,
// and every link to a section of docs/design.md names one it has.
func TestDesignDocReferences(t *testing.T) {
	design, err := os.ReadFile("../docs/design.md")
	if err != nil {
		t.Fatalf("docs/design.md: %v", err)
	}
	_, statErr := os.Stat("../" + "DES" + "IGN.md")
	anchors := headingAnchors(string(design))
	link := regexp.MustCompile(`design\.md#([A-Za-z0-9_-]+)`)
	for _, f := range repoFiles(t) {
		if f == "tools/layout_test.go" {
			continue
		}
		raw, err := os.ReadFile(filepath.Join("..", f))
		if err != nil || bytes.IndexByte(raw, 0) >= 0 {
			continue // gone from the work tree, or binary
		}
		for i, l := range strings.Split(string(raw), "\n") {
			if statErr != nil && designRef.MatchString(l) {
				t.Errorf("%s:%d: refers to a design document that is not in the repository (use docs/design.md): %s", f, i+1, strings.TrimSpace(l))
			}
			for _, m := range link.FindAllStringSubmatch(l, -1) {
				if !anchors[m[1]] {
					t.Errorf("%s:%d: links to docs/design.md#%s, a section it does not have", f, i+1, m[1])
				}
			}
		}
	}
}

// headingAnchors are the anchors a Markdown renderer gives a document's
// headings: lower case, spaces to hyphens, other punctuation dropped.
func headingAnchors(doc string) map[string]bool {
	anchors := map[string]bool{}
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(l, "#") {
			continue
		}
		h := strings.ToLower(strings.TrimSpace(strings.TrimLeft(l, "#")))
		var b strings.Builder
		for _, r := range h {
			switch {
			case r == ' ':
				b.WriteRune('-')
			case r == '-' || r == '_' || (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9'):
				b.WriteRune(r)
			}
		}
		anchors[b.String()] = true
	}
	return anchors
}

// TestGoCommentsNameFilesThatExist: a comment naming a Go file ("layout_test.go",
// "verify/verifier.go") names one the repository has: a plain name in
// the comment's own directory, a path from the repository's root.
func TestGoCommentsNameFilesThatExist(t *testing.T) {
	goFile := regexp.MustCompile(`[A-Za-z0-9_./-]*[A-Za-z0-9_]\.go\b`)
	for _, f := range repoFiles(t) {
		if !strings.HasSuffix(f, ".go") {
			continue
		}
		raw, err := os.ReadFile(filepath.Join("..", f))
		if err != nil {
			continue // gone from the work tree
		}
		for i, l := range strings.Split(string(raw), "\n") {
			_, comment, ok := strings.Cut(l, "//")
			if !ok {
				continue
			}
			for _, name := range goFile.FindAllString(comment, -1) {
				p := path.Join(path.Dir(f), name)
				if strings.Contains(name, "/") {
					p = path.Clean(name)
				}
				if _, err := os.Stat(filepath.Join("..", p)); err != nil {
					t.Errorf("%s:%d: the comment names %s, which the repository does not have", f, i+1, name)
				}
			}
		}
	}
}
