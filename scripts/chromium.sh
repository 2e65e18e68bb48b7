# Sourced by scripts/test.sh: makes headless Chromium and its WebDriver available for the
# web client's browser test (wur2-tokio/tests/web_browser.rs) and exports
# WUR2_TEST_CHROMEDRIVER (the chromedriver binary) and WUR2_TEST_CHROMIUM (the browser).
#
# Debian's chromium and chromium-driver are installed when missing (as root). When they
# cannot be had: with CI=true this fails the test command; otherwise it prints a loud
# SKIPPED warning and the browser test skips itself.
# Override by exporting WUR2_TEST_CHROMEDRIVER (and WUR2_TEST_CHROMIUM) yourself.

source "$(dirname "${BASH_SOURCE[0]}")/service-skip.sh"
wur2_chromium_skip() {
    wur2_skip_service "the web client's browser test" "$1" WUR2_TEST_CHROMEDRIVER WUR2_TEST_CHROMIUM
}

wur2_chromium_find() {
    WUR2_CHROMEDRIVER_FOUND=$(command -v chromedriver || true)
    WUR2_CHROMIUM_FOUND=$(command -v chromium || command -v chromium-browser || true)
}

wur2_chromium_setup() {
    if [ -n "${WUR2_TEST_CHROMEDRIVER:-}" ]; then
        echo "Using WUR2_TEST_CHROMEDRIVER from the environment" >&2
        return 0
    fi
    wur2_chromium_find
    if [ -z "$WUR2_CHROMEDRIVER_FOUND" ] || [ -z "$WUR2_CHROMIUM_FOUND" ]; then
        if [ "$(id -u)" != 0 ]; then
            wur2_chromium_skip "chromium and chromium-driver are not installed (apt-get install chromium chromium-driver, as root)"
            return
        fi
        { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1 ||
            { apt-get update -qq >/dev/null 2>&1 &&
                DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1; }; } ||
            true
        wur2_chromium_find
        if [ -z "$WUR2_CHROMEDRIVER_FOUND" ] || [ -z "$WUR2_CHROMIUM_FOUND" ]; then
            wur2_chromium_skip "chromium and chromium-driver could not be installed (apt-get install chromium chromium-driver)"
            return
        fi
    fi
    export WUR2_TEST_CHROMEDRIVER="$WUR2_CHROMEDRIVER_FOUND"
    export WUR2_TEST_CHROMIUM="$WUR2_CHROMIUM_FOUND"
    echo "Chromium for the browser test: $WUR2_TEST_CHROMIUM, driver $WUR2_TEST_CHROMEDRIVER" >&2
}

wur2_chromium_setup
