// The request validation every HTTP function shares (kept importable from here for the query routes).
export * from '../../shared/params.ts';
