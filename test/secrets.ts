/** Test-only secret values, shared by the vitest config (bindings) and the tests. Never used outside tests. */
export const TEST_ADMIN_TOKEN = 'test-admin-token-0123456789abcdef0123456789';
export const TEST_KEK = 'test-kek-0123456789abcdef0123456789abcdef';
export const TEST_GATEWAY_TOKEN = 'test-gateway-master-token-0123456789';
