/** What the gateway answers (docs/design.md §7), with the API's own field names. */

export interface Profile {
  name: string;
  email: string;
  education: string;
  gender: string;
}

export interface Registration {
  principal: string;
  shard: string;
  profile: Profile;
  /** True for 201 (new), false for 200 (already registered). */
  created: boolean;
}

export interface Today {
  day: string;
  attempts: number;
  earned: number;
  attempts_left: number;
}

export interface Balance {
  staked: number;
  pending: number;
}

export interface Me {
  principal: string;
  shard: string;
  profile: Profile;
  completed_units: string[];
  today: Today;
  balance: Balance;
}

export interface UnitSummary {
  id: string;
  subject: string;
  title: string;
  reward: number;
  version: number;
  question_count: number;
}

export interface UnitPage {
  units: UnitSummary[];
  next_cursor: string | null;
}

export interface Choice {
  id: string;
  text: string;
}

export interface Question {
  id: string;
  prompt: string;
  choices: Choice[];
}

export interface Unit {
  id: string;
  subject: string;
  title: string;
  body: string;
  reward: number;
  version: number;
  quiz: { pass_score: number; questions: Question[] };
}

export interface SubmissionResult {
  passed: boolean;
  score: number;
  total: number;
  reward: number;
  first_completion: boolean;
  balance: number;
  pending: number;
  attempts_today: number;
  attempts_left: number;
}

export interface ShardView {
  id: string;
  state: "active" | "full" | "unknown";
  users: number;
  capacity: number;
}

export interface ClusterView {
  shards: ShardView[];
  soft_limit: number;
  total_granted: number;
  cap: number;
  total_staked: number;
}

export interface NewUser {
  name: string;
  email: string;
  education?: string;
  gender?: string;
}

export type ProfileChanges = Partial<Profile>;
