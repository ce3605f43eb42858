# Sourced by scripts/deb.sh and scripts/dist.sh (and mirrored by the
# Makefile): the version stamped into fedgate ("fedgate version") and the
# Debian package version derived from it. VERSION and COMMIT may be set by
# the caller, e.g. VERSION=1.2.0 for a release build.
VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
COMMIT=${COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
# Debian versions must start with a digit: "v1.2.3" gives 1.2.3,
# "v1.2.3-4-gabc1234" (4 commits after the tag) 1.2.3+4.gabc1234, and an
# untagged build 0.0~git<commit date>.<short commit>, which sorts before
# any release.
case $VERSION in
v[0-9]* | [0-9]*)
	DEB_VERSION=$(printf '%s' "${VERSION#v}" | sed 's/-/+/; s/-/./g')
	;;
*)
	date=$(git log -1 --format=%cd --date=format:%Y%m%d 2>/dev/null || date -u +%Y%m%d)
	DEB_VERSION="0.0~git${date}.$(printf '%s' "$VERSION" | tr -c 'A-Za-z0-9.\n' '.')"
	;;
esac
LDFLAGS="-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}"
